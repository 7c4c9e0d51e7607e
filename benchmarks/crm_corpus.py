#!/usr/bin/env python3
"""An independent CRM test corpus for idres: a simulated multi-channel customer event stream with ground truth.

This generator was written from its own specification, separately from ``streams/synthetic.py`` and without
reference to how the resolver normalizes or matches anything, so that accuracy measured on it is not
accuracy on the data the rules were tuned on.

The simulated business is a UK-based retailer (web shop, app, e-mail marketing, a call centre in the UK,
shops in the UK, Ireland, Germany, France, Spain, the US and India, live chat, social media and a loyalty
programme). Its customers live in seven countries, in households, and change over the two simulated years
(2023-01-01 .. 2024-12-31): they marry and change surname, move house, change e-mail address and phone,
replace lost loyalty cards. Every channel writes identifiers and attributes the way it sees them:

* loyalty cards are printed ``LY-6990-5496``, scanned as ``LY69905496``, keyed by staff as ``6990 5496`` ...
* phones are written in national or international form with any punctuation; numbers abroad mostly in
  international form; the telephony system gives E.164; some numbers are in drama/test ranges;
* e-mails vary in case, gmail dots, ``+tags``, googlemail, and call-centre agents mistype them;
* names come with nicknames, by-ear spellings, swapped fields, dropped accents, block capitals;
  birth dates come in many formats, sometimes only the year;
* households share an address, a landline, a family mailbox, a tablet or a TV app; Jr. and twins exist;
* strangers share shop POS terminals and kiosks, call-centre placeholders (``noemail@...``,
  ``0000000000``) and a shop's own loyalty card;
* devices browse anonymously and log in later (or never);
* life events leave traces where customers report them: profile updates, "change of address" and
  "change of name" calls, a new name on the loyalty account; online orders carry the delivery name and
  address (a few are presents shipped to somebody else, who is not the buyer).

Proportions are this generator's own choices (see ``World`` and ``Simulator``); ``write_corpus`` returns
counts of what was written and of the traits the simulation drew.

The output is JSON lines in ``occurred_at`` order (a re-sent duplicate follows its original), with a small
share of malformed lines, and a truth CSV ``event_id,person_id,household_id`` with one row per valid,
distinct event. Everything is drawn from one ``random.Random(seed)``: the same people and seed give
byte-identical files.

Usage: ``python benchmarks/crm_corpus.py --people 2000 --seed 1 --out events.jsonl --truth truth.csv``
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from itertools import accumulate
from pathlib import Path
from random import Random
from typing import Optional

# ----------------------------------------------------------------------------------------------------------
# time

START = datetime(2023, 1, 1, tzinfo=timezone.utc)
T0 = int(START.timestamp())
DAYS = 730
T1 = T0 + DAYS * 86400
T0_MS, T1_MS = T0 * 1000, T1 * 1000
DAY_MS = 86_400_000
HOME = "GB"  # where the business, its call centre and its systems are

# zone -> (standard offset in minutes, daylight-saving rule)
ZONES = {
    "Europe/London": (0, "eu"), "Europe/Dublin": (0, "eu"), "Europe/Berlin": (60, "eu"),
    "Europe/Paris": (60, "eu"), "Europe/Madrid": (60, "eu"), "Asia/Kolkata": (330, None),
    "America/New_York": (-300, "us"), "America/Chicago": (-360, "us"), "America/Los_Angeles": (-480, "us"),
}
_DST: dict[tuple, tuple[int, int]] = {}


def _sunday_on_or_before(d: date) -> date:
    return d - timedelta(days=(d.weekday() + 1) % 7)


def _dst_window(rule: str, std: int, year: int) -> tuple[int, int]:
    key = (rule, std, year)
    if key not in _DST:
        if rule == "eu":  # last Sunday of March / October, 01:00 UTC
            a = _sunday_on_or_before(date(year, 3, 31))
            b = _sunday_on_or_before(date(year, 10, 31))
            start = int(datetime(a.year, a.month, a.day, 1, tzinfo=timezone.utc).timestamp())
            end = int(datetime(b.year, b.month, b.day, 1, tzinfo=timezone.utc).timestamp())
        else:  # second Sunday of March 02:00 local standard time / first Sunday of November 02:00 daylight time
            a = _sunday_on_or_before(date(year, 3, 14))
            b = _sunday_on_or_before(date(year, 11, 7))
            start = int(datetime(a.year, a.month, a.day, 2, tzinfo=timezone.utc).timestamp()) - std * 60
            end = int(datetime(b.year, b.month, b.day, 2, tzinfo=timezone.utc).timestamp()) - (std + 60) * 60
        _DST[key] = (start, end)
    return _DST[key]


def utc_offset(zone: str, ts: int) -> int:
    std, rule = ZONES[zone]
    if rule is None:
        return std
    year = 2023 if ts < T0 + 365 * 86400 else 2024 if ts < T0 + 731 * 86400 else 2025
    start, end = _dst_window(rule, std, year)
    return std + 60 if start <= ts < end else std


def render_time(ms: int, zone: str, style: str) -> str:
    sec, milli = divmod(ms, 1000)
    if style in ("z_ms", "z", "utc"):
        text = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        return text + (f".{milli:03d}Z" if style == "z_ms" else "Z" if style == "z" else "+00:00")
    off = utc_offset(zone, sec)
    return datetime.fromtimestamp(sec, timezone(timedelta(minutes=off))).isoformat()


# local hour-of-day weights per kind of activity
HOURS = {
    "online": [2, 1, 1, 1, 1, 1, 2, 4, 6, 6, 6, 7, 8, 8, 7, 7, 7, 8, 10, 12, 13, 12, 9, 5],
    "store": [0, 0, 0, 0, 0, 0, 0, 0, 1, 4, 7, 9, 11, 12, 11, 10, 10, 11, 10, 7, 4, 1, 0, 0],
    "call": [0, 0, 0, 0, 0, 0, 0, 0, 6, 10, 11, 11, 9, 10, 10, 9, 8, 7, 6, 5, 3, 0, 0, 0],
    "email": [1, 1, 0, 0, 0, 1, 3, 7, 9, 8, 7, 6, 7, 6, 5, 5, 5, 6, 7, 8, 8, 7, 4, 2],
}
_HOUR_CUM = {k: list(accumulate(v)) for k, v in HOURS.items()}


# ----------------------------------------------------------------------------------------------------------
# names

def _split(text: str) -> list[str]:
    return [w.strip() for w in text.split(",") if w.strip()]


CULTURES: dict[str, dict[str, list[str]]] = {k: {g: _split(v) for g, v in d.items()} for k, d in {
    "english": {
        "m": "James, John, Robert, Michael, William, David, Richard, Thomas, Christopher, Daniel, Matthew, Mark, "
             "Paul, Andrew, Steven, Joshua, Anthony, George, Edward, Jonathan, Stephen, Benjamin, Samuel, Oliver, "
             "Harry, Jack, Charlie, Alexander, Peter, Kevin, Gareth, Callum, Liam, Nathan, Ryan, Adam, Philip, "
             "Simon, Graham, Ian, Neil, Stuart, Alistair, Darren, Lewis, Jamie, Tyrone, Marcus, Dwayne, Hamish, "
             "Rhys, Dylan, Ethan, Noah, Brandon, Tyler",
        "f": "Sarah, Elizabeth, Emma, Katherine, Laura, Rebecca, Jennifer, Jessica, Emily, Charlotte, Sophie, "
             "Hannah, Amy, Rachel, Claire, Catherine, Helen, Lucy, Olivia, Amelia, Mary, Isla, Grace, Chloe, "
             "Megan, Victoria, Margaret, Susan, Karen, Deborah, Joanne, Nicola, Gemma, Kirsty, Zoe, Abigail, "
             "Natalie, Michelle, Alison, Lauren, Ashley, Samantha, Alexandra, Eleanor, Florence, Keisha, "
             "Bethan, Siân, Tiffany, Madison, Brittany, Isabel",
        "s": "Smith, Jones, Williams, Taylor, Brown, Davies, Evans, Wilson, Thomas, Johnson, Roberts, Robinson, "
             "Thompson, Wright, Walker, White, Edwards, Hughes, Green, Hall, Lewis, Harris, Clarke, Jackson, "
             "Wood, Turner, Martin, Cooper, Hill, Ward, Morris, Moore, Clark, Lee, King, Baker, Harrison, Morgan, "
             "Allen, James, Scott, Phillips, Watson, Davis, Parker, Price, Bennett, Young, Griffiths, Mitchell, "
             "Cook, Carter, Richardson, Bailey, Collins, Bell, Shaw, Miller, Anderson, Campbell, Stewart, "
             "MacDonald, Reid, Fraser, Henderson, Ross, Matthews, Washington, Ellis, Fletcher, Pritchard",
    },
    "irish": {
        "m": "Sean, Patrick, Conor, Ciarán, Niall, Eoin, Cian, Darragh, Oisín, Declan, Colm, Fergal, Pádraig, "
             "Shane, Aidan, Brendan, Kieran, Ronan, Cathal, Donal, Michael, John",
        "f": "Aoife, Siobhán, Niamh, Saoirse, Ciara, Róisín, Orla, Sinéad, Caoimhe, Aisling, Clodagh, Gráinne, "
             "Deirdre, Máire, Eimear, Fiona, Sorcha, Úna, Emer, Mary, Catherine",
        "s": "Murphy, Kelly, O'Sullivan, Walsh, O'Brien, Byrne, Ryan, O'Connor, O'Neill, O'Reilly, Doyle, "
             "McCarthy, Gallagher, O'Doherty, Kennedy, Lynch, Murray, Quinn, Fitzgerald, Brennan, Nolan, Duffy, "
             "Dunne, Kavanagh, Keane, McLoughlin, Ó Briain, Mac Giolla Phádraig",
    },
    "german": {
        "m": "Lukas, Maximilian, Jonas, Felix, Leon, Paul, Thomas, Michael, Andreas, Stefan, Jürgen, Klaus, "
             "Wolfgang, Uwe, Dieter, Matthias, Sebastian, Tobias, Florian, Johannes, Markus, Frank, Jörg, "
             "Henrik, Niklas, Moritz",
        "f": "Anna, Lena, Leonie, Hannah, Julia, Katharina, Sabine, Petra, Ursula, Monika, Claudia, Andrea, "
             "Stefanie, Birgit, Susanne, Laura, Sophie, Marie, Jana, Franziska, Annika, Heike, Kerstin, Greta",
        "s": "Müller, Schmidt, Schneider, Fischer, Weber, Meyer, Wagner, Becker, Schulz, Hoffmann, Schäfer, "
             "Koch, Bauer, Richter, Klein, Wolf, Schröder, Neumann, Schwarz, Zimmermann, Braun, Krüger, "
             "Hofmann, Hartmann, Lange, Schmitt, Werner, Krause, Meier, Lehmann, Köhler, Weiß",
    },
    "french": {
        "m": "Jean, Pierre, Michel, Philippe, Nicolas, Julien, Thomas, Antoine, Alexandre, François, Olivier, "
             "Sébastien, Guillaume, Mathieu, Laurent, Christophe, Stéphane, Hugo, Lucas, Théo, Louis, "
             "Baptiste, Jérôme, Yannick, Jean-Pierre, Jean-Luc",
        "f": "Marie, Camille, Léa, Manon, Chloé, Julie, Sophie, Nathalie, Isabelle, Sylvie, Catherine, "
             "Valérie, Céline, Émilie, Aurélie, Sandrine, Élodie, Inès, Clara, Margaux, Pauline, Amélie, "
             "Juliette, Océane, Marie-Claire, Anne-Sophie",
        "s": "Martin, Bernard, Dubois, Thomas, Robert, Richard, Petit, Durand, Leroy, Moreau, Simon, Laurent, "
             "Lefebvre, Michel, David, Bertrand, Roux, Vincent, Fournier, Morel, Girard, André, Lefèvre, "
             "Mercier, Dupont, Lambert, Bonnet, François, Legrand, Rousseau, Chevalier, Gauthier, Faure",
    },
    "spanish": {
        "m": "Alejandro, José, Antonio, Manuel, Francisco, Javier, David, Daniel, Carlos, Miguel, Jesús, "
             "Rafael, Pablo, Sergio, Fernando, Jorge, Luis, Álvaro, Diego, Adrián, Raúl, Iván, Rubén, Hugo, "
             "Mateo, Santiago, Juan Carlos, José Luis",
        "f": "María, Carmen, Ana, Laura, Lucía, Marta, Isabel, Cristina, Paula, Elena, Sara, Raquel, Pilar, "
             "Rosa, Beatriz, Alba, Nuria, Patricia, Sofía, Martina, Irene, Silvia, Andrea, Claudia, "
             "María José, Guadalupe, Mercedes, Dolores",
        "s": "García, Rodríguez, González, Fernández, López, Martínez, Sánchez, Pérez, Gómez, Martín, Jiménez, "
             "Ruiz, Hernández, Díaz, Moreno, Muñoz, Álvarez, Romero, Alonso, Gutiérrez, Navarro, Torres, "
             "Domínguez, Vázquez, Ramos, Gil, Ramírez, Serrano, Blanco, Molina, Castillo, Ortega, Delgado, "
             "Castro, Ortiz, Rubio, Marín, Sanz, Iglesias, Núñez",
    },
    "italian": {
        "m": "Marco, Giuseppe, Giovanni, Luca, Francesco, Alessandro, Andrea, Matteo, Lorenzo, Davide, "
             "Stefano, Paolo, Antonio, Roberto, Salvatore, Riccardo, Federico, Simone, Gianluca, Vincenzo",
        "f": "Giulia, Francesca, Chiara, Sara, Valentina, Alessandra, Federica, Martina, Elena, Silvia, "
             "Giorgia, Anna, Maria, Rosa, Paola, Elisa, Roberta, Laura, Sofia, Aurora",
        "s": "Rossi, Russo, Ferrari, Esposito, Bianchi, Romano, Colombo, Ricci, Marino, Greco, Bruno, Gallo, "
             "Conti, De Luca, Mancini, Costa, Giordano, Rizzo, Lombardi, Moretti, Barbieri, Fontana, "
             "Santoro, Mariani, Rinaldi, D'Angelo",
    },
    "portuguese": {
        "m": "João, Pedro, Tiago, Rui, Miguel, Diogo, Nuno, Ricardo, André, Gonçalo, Bruno, Luís, Paulo, "
             "Hugo, Filipe",
        "f": "Ana, Maria, Inês, Beatriz, Mariana, Joana, Sofia, Catarina, Rita, Marta, Carolina, Leonor, "
             "Filipa, Sara, Patrícia",
        "s": "Silva, Santos, Ferreira, Pereira, Oliveira, Costa, Rodrigues, Martins, Jesus, Sousa, Fernandes, "
             "Gonçalves, Gomes, Lopes, Marques, Alves, Almeida, Ribeiro, Pinto, Carvalho",
    },
    "polish": {
        "m": "Piotr, Krzysztof, Andrzej, Tomasz, Paweł, Michał, Marcin, Jakub, Łukasz, Grzegorz, Mateusz, "
             "Wojciech, Kamil, Bartosz, Aleksander, Szymon, Dawid, Maciej",
        "f": "Anna, Katarzyna, Małgorzata, Agnieszka, Barbara, Ewa, Magdalena, Joanna, Aleksandra, Monika, "
             "Zofia, Natalia, Karolina, Justyna, Marta, Dorota, Weronika, Paulina",
        "s": "Nowak, Kowalski, Wiśniewski, Wójcik, Kowalczyk, Kamiński, Lewandowski, Zieliński, Szymański, "
             "Woźniak, Dąbrowski, Kozłowski, Jankowski, Mazur, Krawczyk, Piotrowski, Grabowski, "
             "Nowakowski, Pawłowski, Michalski",
    },
    "indian": {
        "m": "Rahul, Amit, Rajesh, Sanjay, Vikram, Arjun, Aditya, Rohan, Suresh, Anil, Vijay, Karthik, "
             "Pradeep, Abhishek, Venkatesh, Gurpreet, Arun, Nikhil, Deepak, Manoj, Ravi, Sunil, Aarav, "
             "Vivaan, Ishaan, Kiran, Harpreet",
        "f": "Priya, Anjali, Sunita, Pooja, Neha, Divya, Kavya, Lakshmi, Deepika, Meera, Aishwarya, Shreya, "
             "Ananya, Sneha, Swati, Nisha, Rekha, Geeta, Simran, Aditi, Ishita, Sanya, Kiran, Harpreet",
        "s": "Patel, Sharma, Singh, Kumar, Gupta, Shah, Mehta, Reddy, Iyer, Nair, Rao, Joshi, Desai, Kapoor, "
             "Malhotra, Chopra, Banerjee, Chatterjee, Mukherjee, Das, Pillai, Menon, Agarwal, Verma, Mishra, "
             "Bhatt, Sandhu, Gill, Chauhan, Krishnan, Subramanian, Venkataraman",
    },
    "arabic": {
        "m": "Mohammed, Ahmed, Ali, Omar, Youssef, Hassan, Ibrahim, Khalid, Karim, Mustafa, Tariq, Bilal, "
             "Hamza, Imran, Rachid, Saïd, Samir, Nabil, Abdullah",
        "f": "Fatima, Aisha, Mariam, Nour, Layla, Yasmin, Amira, Salma, Khadija, Zainab, Huda, Samira, "
             "Leila, Rania, Sara, Inès",
        "s": "Khan, Hussain, Ahmed, Ali, Rahman, Hassan, Ibrahim, Mahmoud, El Amrani, Benali, Haddad, Saleh, "
             "Aziz, Qureshi, Malik, Iqbal, Chaudhry, Mansour, Bouazza, El Idrissi, Begum",
    },
    "turkish": {
        "m": "Mehmet, Mustafa, Ahmet, Ali, Hüseyin, Hasan, Murat, Emre, Burak, Can, Deniz, Cem, Serkan, "
             "Kemal, Yusuf",
        "f": "Ayşe, Fatma, Emine, Hatice, Zeynep, Elif, Merve, Esra, Özlem, Derya, Selin, Ebru, Gül, Aylin",
        "s": "Yılmaz, Kaya, Demir, Şahin, Çelik, Yıldız, Yıldırım, Öztürk, Aydın, Özdemir, Arslan, Doğan, "
             "Kılıç, Aslan, Çetin, Kara, Koç, Kurt, Özkan, Şimşek",
    },
    "chinese": {
        "m": "Wei, Jun, Hao, Lei, Ming, Jie, Tao, Yang, Bo, Jian, Feng, Kai, Zhen, Xin, Zihan",
        "f": "Li, Mei, Xiu, Yan, Ying, Hui, Jing, Lin, Xiao, Fang, Na, Ting, Qing, Yu, Lan",
        "s": "Wang, Li, Zhang, Liu, Chen, Yang, Huang, Zhao, Wu, Zhou, Xu, Sun, Ma, Zhu, Hu, Guo, He, Lin, "
             "Wong, Chan, Cheung, Lau, Ng, Leung",
    },
    "west_african": {
        "m": "Chinedu, Oluwaseun, Emeka, Tunde, Adebayo, Ikenna, Kwame, Kofi, Obinna, Femi, Segun, "
             "Chukwuemeka, Babajide, Yaw, Nnamdi",
        "f": "Ngozi, Chioma, Adaeze, Funmilayo, Yetunde, Amara, Folake, Abena, Ama, Efua, Nkechi, Temitope, "
             "Blessing, Precious, Adaora",
        "s": "Okafor, Adeyemi, Okonkwo, Balogun, Eze, Nwosu, Mensah, Owusu, Boateng, Adebayo, Olawale, "
             "Chukwu, Obi, Asante, Ogunleye, Bello, Akinola",
    },
}.items()}

# formal first name -> diminutives / short forms people go by
NICKNAMES = {k: _split(v) for k, v in {
    "William": "Will, Bill, Billy", "Robert": "Rob, Bob, Robbie", "Richard": "Rich, Rick, Ricky",
    "James": "Jim, Jimmy, Jamie", "John": "Johnny, Jack", "Michael": "Mike, Mick, Micky",
    "Christopher": "Chris, Kit", "Daniel": "Dan, Danny", "Matthew": "Matt", "Anthony": "Tony",
    "Andrew": "Andy, Drew", "Joshua": "Josh", "Thomas": "Tom, Tommy", "Edward": "Ed, Eddie, Ted",
    "Jonathan": "Jon, Jonny", "Stephen": "Steve", "Steven": "Steve", "Benjamin": "Ben",
    "Samuel": "Sam", "Alexander": "Alex, Sandy", "Peter": "Pete", "Philip": "Phil", "David": "Dave",
    "Nathan": "Nate", "Kevin": "Kev", "Oliver": "Ollie", "Callum": "Cal",
    "Elizabeth": "Liz, Beth, Lizzie, Betty", "Katherine": "Kate, Katie, Kathy, Kat",
    "Catherine": "Cathy, Cat, Kate", "Jennifer": "Jen, Jenny", "Jessica": "Jess", "Rebecca": "Becky, Becca",
    "Margaret": "Maggie, Peggy, Meg", "Victoria": "Vicky, Tori", "Samantha": "Sam, Sammy",
    "Alexandra": "Alex, Lexi", "Abigail": "Abby, Abi", "Deborah": "Debbie, Deb", "Susan": "Sue, Suzy",
    "Nicola": "Nicky", "Charlotte": "Lottie, Charlie", "Eleanor": "Ellie, Nell", "Natalie": "Nat",
    "Amelia": "Millie", "Florence": "Flo", "Joanne": "Jo", "Michelle": "Shell", "Isabel": "Izzy",
    "Alejandro": "Alex, Álex, Jandro", "José": "Pepe", "Francisco": "Paco, Fran, Curro",
    "Manuel": "Manolo, Manu", "Antonio": "Toni, Toño", "Jesús": "Chus", "Javier": "Javi",
    "Guadalupe": "Lupe", "Dolores": "Lola", "Mercedes": "Merche", "Rafael": "Rafa", "Fernando": "Nando",
    "María José": "Majo", "José Luis": "Joselu", "Cristina": "Cris", "Beatriz": "Bea", "Santiago": "Santi",
    "Maximilian": "Max", "Johannes": "Hannes", "Katharina": "Kathi, Katja", "Stefanie": "Steffi",
    "Franziska": "Franzi", "Andreas": "Andi", "Sebastian": "Basti", "Tobias": "Tobi", "Florian": "Flo",
    "Susanne": "Susi", "Alexandre": "Alex", "Nicolas": "Nico", "Sébastien": "Seb", "Christophe": "Chris",
    "Stéphane": "Steph", "Isabelle": "Isa", "Valérie": "Val", "Giuseppe": "Beppe, Peppe",
    "Francesco": "Franco", "Alessandro": "Sandro, Alex", "Giovanni": "Gianni", "Salvatore": "Salvo, Totò",
    "Vincenzo": "Enzo", "Federica": "Fede", "Aleksander": "Olek", "Katarzyna": "Kasia",
    "Małgorzata": "Gosia, Małgosia", "Agnieszka": "Aga", "Aleksandra": "Ola", "Magdalena": "Magda",
    "Krzysztof": "Krzysiek", "Piotr": "Piotrek", "Tomasz": "Tomek", "Jakub": "Kuba", "Wojciech": "Wojtek",
    "Joanna": "Asia", "Venkatesh": "Venky", "Abhishek": "Abhi", "Rajesh": "Raj", "Vikram": "Vicky",
    "Aishwarya": "Ash", "Aditya": "Adi", "Nikhil": "Nik", "Deepika": "Deepa", "Oluwaseun": "Seun",
    "Babajide": "Jide", "Funmilayo": "Funmi", "Temitope": "Tope", "Adebayo": "Bayo", "Chukwuemeka": "Emeka",
    "Abdullah": "Abdul", "Mohammed": "Mo", "Ibrahim": "Ibby",
}.items()}

# how a name is heard and typed by a call-centre agent in the UK
BY_EAR = {k: _split(v) for k, v in {
    "John": "Jon", "Jon": "John", "Steven": "Stephen", "Stephen": "Steven", "Catherine": "Kathryn, Katherine",
    "Katherine": "Catherine, Kathryn", "Philip": "Phillip", "Sean": "Shaun, Shawn", "Claire": "Clare",
    "Sarah": "Sara", "Sara": "Sarah", "Isabel": "Isobel, Isabelle", "Lewis": "Louis", "Louis": "Lewis",
    "Zoe": "Zoë, Zoey", "Mohammed": "Mohammad, Muhammad, Mohamed", "Aisha": "Ayesha", "Jakub": "Jacob",
    "Siobhán": "Shivaun, Siobhan", "Niamh": "Neve, Neeve", "Aoife": "Eefa, Aoifa", "Saoirse": "Seersha",
    "Ciarán": "Kieran", "Oisín": "Osheen", "Sinéad": "Shinead", "Caoimhe": "Keeva", "Róisín": "Rosheen",
    "Lukas": "Lucas", "Jürgen": "Yurgen", "Jörg": "Yorg", "Wojciech": "Voytek", "Łukasz": "Lukas",
    "Krzysztof": "Kristof", "Chloe": "Khloe", "Rebecca": "Rebekah", "Gemma": "Jemma", "Kirsty": "Kirstie",
    "Lauren": "Loren", "Priya": "Preeya", "Yasmin": "Jasmine, Yasmine", "Matthew": "Mathew",
    "Geeta": "Gita", "Deepak": "Dipak", "Ngozi": "Ngozie", "Chinedu": "Chinedo", "Tunde": "Toonday",
    "Ayşe": "Aysha", "Hüseyin": "Hussein", "Małgorzata": "Margaret", "Guillaume": "Gillome",
    "Smith": "Smyth", "Smyth": "Smith", "Thompson": "Thomson", "Reid": "Reed, Read", "MacDonald": "McDonald",
    "Matthews": "Mathews", "Davies": "Davis", "Davis": "Davies", "Clarke": "Clark", "Clark": "Clarke",
    "Phillips": "Philips", "Stewart": "Stuart", "Meyer": "Meier, Maier, Mayer", "Meier": "Meyer, Maier",
    "Schmidt": "Schmitt, Schmid", "Schmitt": "Schmidt", "Müller": "Muller, Mueller", "Schäfer": "Schafer",
    "Weiß": "Weiss", "Köhler": "Kohler", "Krüger": "Kruger", "O'Sullivan": "Sullivan, OSullivan",
    "O'Brien": "OBrien, O Brien", "McCarthy": "MacCarthy", "Nowak": "Novak", "Wójcik": "Voychik, Wojcik",
    "Kowalski": "Kovalski", "Gallagher": "Gallacher", "Kavanagh": "Cavanagh", "Hussain": "Hussein, Husain",
    "Chaudhry": "Choudhury, Chowdhury", "Qureshi": "Kureshi", "Lefebvre": "Lefevre", "Dupont": "Dupond",
    "Chatterjee": "Chaterjee", "Banerjee": "Banerji", "Mukherjee": "Mukerji", "González": "Gonzales",
    "Rodríguez": "Rodrigues", "Hernández": "Hernandes", "Gómez": "Gomes", "Okafor": "Okaffor",
    "Yılmaz": "Yilmas", "Mensah": "Mensa", "Wong": "Wang", "Byrne": "Burn",
}.items()}

CHINESE_ENGLISH = {"m": _split("Kevin, Eric, Jason, Tony, Daniel, Vincent, Jack"),
                   "f": _split("Grace, Vivian, Cindy, Angela, Joyce, Jenny, Sharon")}

# residence country -> cultural background mix
CULTURE_MIX = {
    "GB": [("english", 58), ("irish", 4), ("indian", 9), ("arabic", 5), ("polish", 5), ("west_african", 4),
           ("chinese", 3), ("italian", 2), ("spanish", 2), ("french", 2), ("portuguese", 2), ("german", 1),
           ("turkish", 1)],
    "US": [("english", 55), ("spanish", 18), ("chinese", 6), ("indian", 6), ("italian", 5), ("irish", 5),
           ("german", 3), ("west_african", 2)],
    "DE": [("german", 74), ("turkish", 12), ("polish", 5), ("italian", 4), ("arabic", 3), ("spanish", 2)],
    "FR": [("french", 74), ("arabic", 12), ("portuguese", 6), ("spanish", 4), ("italian", 3), ("west_african", 3)],
    "ES": [("spanish", 84), ("english", 5), ("arabic", 4), ("german", 3), ("french", 2), ("italian", 2)],
    "IN": [("indian", 100)],
    "IE": [("irish", 62), ("english", 18), ("polish", 10), ("indian", 6), ("spanish", 2), ("french", 2)],
}
COUNTRY_MIX = [("GB", 56), ("US", 10), ("DE", 8), ("FR", 8), ("ES", 7), ("IN", 5), ("IE", 6)]
# the phone country an expatriate may keep
CULTURE_PHONE = {"spanish": "ES", "french": "FR", "german": "DE", "indian": "IN", "irish": "IE", "english": "GB"}
# share of married women taking the husband's surname, by culture
TAKES_NAME = {"english": 0.8, "irish": 0.75, "german": 0.75, "french": 0.7, "polish": 0.85, "italian": 0.3,
              "portuguese": 0.4, "indian": 0.8, "arabic": 0.3, "turkish": 0.9, "chinese": 0.05,
              "west_african": 0.8, "spanish": 0.0}
CURRENCY = {"GB": "GBP", "US": "USD", "DE": "EUR", "FR": "EUR", "ES": "EUR", "IE": "EUR", "IN": "INR"}
PRICE_FACTOR = {"GBP": 1.0, "USD": 1.25, "EUR": 1.15, "INR": 95.0}


# ----------------------------------------------------------------------------------------------------------
# places

@dataclass(frozen=True)
class City:
    name: str
    country: str
    zone: str
    weight: float
    variants: tuple  # spellings, the first canonical
    post: tuple      # postcode recipe
    land: tuple      # landline (area code, local length) or US area codes
    test_land: Optional[tuple] = None  # (area, local prefix) of a drama/test range


def _gb(name, w, areas, dmax, area, local, test=None, variants=None):
    return City(name, "GB", "Europe/London", w, variants or (name, name.upper()), ("gb", areas, dmax), (area, local),
                test)


CITIES = {
    "GB": [
        _gb("London", 30, ("E", "N", "SE", "SW", "W", "NW"), 20, "20", 8, ("20", "79460"),
            ("London", "LONDON", "Greater London", "london")),
        _gb("Manchester", 8, ("M",), 40, "161", 7, ("161", "4960")),
        _gb("Birmingham", 7, ("B",), 45, "121", 7, ("121", "4960")),
        _gb("Leeds", 5, ("LS",), 28, "113", 7, ("113", "4960")),
        _gb("Glasgow", 5, ("G",), 80, "141", 7, ("141", "4960")),
        _gb("Edinburgh", 4, ("EH",), 17, "131", 7, ("131", "4960")),
        _gb("Bristol", 4, ("BS",), 16, "117", 7, ("117", "4960")),
        _gb("Liverpool", 4, ("L",), 36, "151", 7, ("151", "4960")),
        _gb("Cardiff", 3, ("CF",), 24, "29", 8, ("29", "20180"), ("Cardiff", "Caerdydd", "CARDIFF")),
        _gb("Sheffield", 3, ("S",), 36, "114", 7, ("114", "4960")),
        _gb("Newcastle upon Tyne", 3, ("NE",), 15, "191", 7, ("191", "4980"),
            ("Newcastle upon Tyne", "Newcastle", "Newcastle-upon-Tyne", "NEWCASTLE")),
        _gb("Nottingham", 3, ("NG",), 11, "115", 7, ("115", "4960")),
        _gb("Belfast", 2, ("BT",), 17, "28", 8, ("28", "96496")),
        _gb("Brighton", 2, ("BN",), 3, "1273", 6, None, ("Brighton", "Brighton and Hove", "Brighton & Hove")),
        _gb("Oxford", 1.5, ("OX",), 4, "1865", 6),
        _gb("Cambridge", 1.5, ("CB",), 5, "1223", 6),
        _gb("York", 1.5, ("YO",), 32, "1904", 6),
    ],
    "US": [
        City("New York", "US", "America/New_York", 35, ("New York", "New York, NY", "NYC", "new york"),
             ("us", "100"), ("212", "646", "718", "917")),
        City("Chicago", "US", "America/Chicago", 15, ("Chicago", "Chicago, IL", "CHICAGO"), ("us", "606"),
             ("312", "773", "872")),
        City("San Francisco", "US", "America/Los_Angeles", 15, ("San Francisco", "San Francisco, CA", "SF"),
             ("us", "941"), ("415", "628")),
        City("Boston", "US", "America/New_York", 10, ("Boston", "Boston, MA"), ("us", "021"), ("617", "857")),
        City("Austin", "US", "America/Chicago", 8, ("Austin", "Austin, TX"), ("us", "787"), ("512", "737")),
        City("Seattle", "US", "America/Los_Angeles", 8, ("Seattle", "Seattle, WA"), ("us", "981"), ("206",)),
        City("Miami", "US", "America/New_York", 9, ("Miami", "Miami, FL"), ("us", "331"), ("305", "786")),
    ],
    "DE": [
        City("Berlin", "DE", "Europe/Berlin", 35, ("Berlin", "BERLIN"), ("range", 10115, 14199), ("30", 8)),
        City("Hamburg", "DE", "Europe/Berlin", 20, ("Hamburg",), ("range", 20095, 22769), ("40", 8)),
        City("München", "DE", "Europe/Berlin", 20, ("München", "Muenchen", "Munich", "MÜNCHEN"),
             ("range", 80331, 81929), ("89", 8)),
        City("Köln", "DE", "Europe/Berlin", 15, ("Köln", "Koeln", "Cologne"), ("range", 50667, 51149), ("221", 7)),
        City("Frankfurt am Main", "DE", "Europe/Berlin", 10, ("Frankfurt am Main", "Frankfurt", "Frankfurt a.M."),
             ("range", 60306, 60599), ("69", 8)),
    ],
    "FR": [
        City("Paris", "FR", "Europe/Paris", 45, ("Paris", "PARIS", "paris"), ("paris",), ("1", 8), ("1", "9900")),
        City("Lyon", "FR", "Europe/Paris", 15, ("Lyon", "LYON"), ("range", 69001, 69009), ("4", 8)),
        City("Marseille", "FR", "Europe/Paris", 12, ("Marseille",), ("range", 13001, 13016), ("4", 8)),
        City("Toulouse", "FR", "Europe/Paris", 10, ("Toulouse",), ("list", "31000", "31100", "31200", "31300",
                                                                  "31400", "31500"), ("5", 8)),
        City("Lille", "FR", "Europe/Paris", 9, ("Lille",), ("list", "59000", "59160", "59260", "59800"), ("3", 8)),
        City("Bordeaux", "FR", "Europe/Paris", 9, ("Bordeaux",), ("list", "33000", "33100", "33200", "33300",
                                                                  "33800"), ("5", 8)),
    ],
    "ES": [
        City("Madrid", "ES", "Europe/Madrid", 40, ("Madrid", "MADRID"), ("range", 28001, 28055), ("91", 7)),
        City("Barcelona", "ES", "Europe/Madrid", 30, ("Barcelona", "BCN"), ("range", 8001, 8042), ("93", 7)),
        City("Valencia", "ES", "Europe/Madrid", 12, ("Valencia", "València"), ("range", 46001, 46026), ("96", 7)),
        City("Sevilla", "ES", "Europe/Madrid", 10, ("Sevilla", "Seville"), ("range", 41001, 41020), ("95", 7)),
        City("Bilbao", "ES", "Europe/Madrid", 8, ("Bilbao", "Bilbo"), ("range", 48001, 48015), ("94", 7)),
    ],
    "IN": [
        City("Mumbai", "IN", "Asia/Kolkata", 30, ("Mumbai", "Bombay", "MUMBAI"), ("in", "4000"), ("22", 8)),
        City("New Delhi", "IN", "Asia/Kolkata", 25, ("New Delhi", "Delhi"), ("in", "1100"), ("11", 8)),
        City("Bengaluru", "IN", "Asia/Kolkata", 25, ("Bengaluru", "Bangalore"), ("in", "5600"), ("80", 8)),
        City("Chennai", "IN", "Asia/Kolkata", 8, ("Chennai", "Madras"), ("in", "6000"), ("44", 8)),
        City("Hyderabad", "IN", "Asia/Kolkata", 7, ("Hyderabad",), ("in", "5000"), ("40", 8)),
        City("Pune", "IN", "Asia/Kolkata", 5, ("Pune", "Poona"), ("in", "4110"), ("20", 8)),
    ],
    "IE": [
        City("Dublin", "IE", "Europe/Dublin", 65, ("Dublin", "Co. Dublin", "DUBLIN"), ("ie", "D"), ("1", 7)),
        City("Cork", "IE", "Europe/Dublin", 20, ("Cork", "Co. Cork"), ("ie", "T12"), ("21", 7)),
        City("Galway", "IE", "Europe/Dublin", 15, ("Galway", "Gaillimh"), ("ie", "H91"), ("91", 6)),
    ],
}

STREETS = {
    "GB": _split("High Street, Church Road, Station Road, Victoria Road, Park Road, Green Lane, Manor Road, "
                 "Church Street, Park Avenue, Queens Road, King Street, Albert Road, Mill Lane, The Crescent, "
                 "Elm Grove, Windsor Road, Grange Road, Springfield Road, Kingsway, Chestnut Close, "
                 "Oak Tree Close, St John's Road, New Street, Highfield Road, Alexandra Road, York Road, "
                 "London Road, Richmond Road, Cedar Avenue, Wellington Street, Bridge Street, Marlborough Road, "
                 "Beech Grove, Stanley Road, Mount Pleasant, Ashfield Drive, Meadow Way, Orchard Close, "
                 "Priory Lane, Coronation Street, Hawthorn Crescent, Sycamore Drive"),
    "US": _split("Main Street, Oak Street, Maple Avenue, Cedar Street, Elm Street, Washington Avenue, "
                 "Lake Street, Hill Street, Park Avenue, Pine Street, 2nd Avenue, 5th Avenue, Lincoln Avenue, "
                 "Jefferson Street, Madison Avenue, Walnut Street, Highland Avenue, Broadway, Mission Street, "
                 "Valencia Street, Congress Avenue, Michigan Avenue, Beacon Street, Commonwealth Avenue, "
                 "Ocean Drive, Pike Street, Sunset Boulevard"),
    "DE": _split("Hauptstraße, Schulstraße, Gartenstraße, Bahnhofstraße, Dorfstraße, Bergstraße, Birkenweg, "
                 "Lindenstraße, Kirchstraße, Waldstraße, Ringstraße, Schillerstraße, Goethestraße, "
                 "Friedrichstraße, Mozartstraße, Am Markt, Rosenweg, Beethovenstraße, Kastanienallee, "
                 "Torstraße, Leopoldstraße, Sonnenallee"),
    "FR": _split("rue de la République, rue Victor Hugo, rue de la Paix, avenue Jean Jaurès, rue Pasteur, "
                 "boulevard Voltaire, rue du Moulin, rue de l'Église, place de la Mairie, rue des Écoles, "
                 "avenue de la Gare, rue Nationale, rue Gambetta, rue Jules Ferry, allée des Tilleuls, "
                 "rue Saint-Honoré, rue de Rivoli, quai de Saône, cours Mirabeau"),
    "ES": _split("Calle Mayor, Calle Real, Avenida de la Constitución, Calle de Alcalá, Gran Vía, Calle Nueva, "
                 "Calle del Sol, Plaza de España, Calle San Juan, Avenida Diagonal, Carrer de Balmes, "
                 "Calle Sierpes, Paseo de la Castellana, Calle de Serrano, Calle Iglesia, Avenida del Puerto, "
                 "Calle Colón"),
    "IN": _split("MG Road, Nehru Road, Gandhi Nagar, Linking Road, Station Road, Brigade Road, Park Street, "
                 "Anna Salai, Road No. 12 Banjara Hills, FC Road, Sector 15, 100 Feet Road Indiranagar, "
                 "5th Block Koramangala, Andheri East, Hill Road Bandra West, Lajpat Nagar"),
    "IE": _split("Main Street, Church Road, Grafton Street, Bridge Street, O'Connell Street, Patrick Street, "
                 "Shop Street, Castle Road, Seafield Road, Griffith Avenue, Clontarf Road, Ranelagh Road, "
                 "Harbour View, Sandymount Avenue"),
}
IN_BUILDINGS = _split("Sai Krupa Apartments, Shanti Niwas, Green Park Residency, Lakeview Towers, "
                      "Prestige Shantiniketan, Sunrise Heights, Ganga Apartments, Vrindavan Society")
ABBREV = [("Street", "St"), ("Road", "Rd"), ("Avenue", "Ave"), ("Close", "Cl"), ("Lane", "Ln"), ("Drive", "Dr"),
          ("Crescent", "Cres"), ("Boulevard", "Blvd"), ("straße", "str."), ("Calle ", "C/ "), ("Avenida", "Avda."),
          ("avenue", "av."), ("boulevard", "bd"), ("rue", "r.")]

STORES = [  # code, name, city, country, zone, weight within its country
    ("LDNOXF", "London Oxford Street", "London", "GB", "Europe/London"),
    ("LDNSTR", "London Stratford", "London", "GB", "Europe/London"),
    ("LDNCLA", "London Clapham", "London", "GB", "Europe/London"),
    ("MANARN", "Manchester Arndale", "Manchester", "GB", "Europe/London"),
    ("BHMBUL", "Birmingham Bullring", "Birmingham", "GB", "Europe/London"),
    ("LDSTRI", "Leeds Trinity", "Leeds", "GB", "Europe/London"),
    ("GLABUC", "Glasgow Buchanan St", "Glasgow", "GB", "Europe/London"),
    ("EDIPRI", "Edinburgh Princes St", "Edinburgh", "GB", "Europe/London"),
    ("BRSCAB", "Bristol Cabot Circus", "Bristol", "GB", "Europe/London"),
    ("LIVONE", "Liverpool One", "Liverpool", "GB", "Europe/London"),
    ("CDFQUE", "Cardiff Queen St", "Cardiff", "GB", "Europe/London"),
    ("NCLELD", "Newcastle Eldon Sq", "Newcastle upon Tyne", "GB", "Europe/London"),
    ("BFSVIC", "Belfast Victoria Sq", "Belfast", "GB", "Europe/London"),
    ("DUBGRA", "Dublin Grafton St", "Dublin", "IE", "Europe/Dublin"),
    ("CRKPAT", "Cork Patrick St", "Cork", "IE", "Europe/Dublin"),
    ("BERALX", "Berlin Alexanderplatz", "Berlin", "DE", "Europe/Berlin"),
    ("MUCKAU", "München Kaufingerstraße", "München", "DE", "Europe/Berlin"),
    ("HAMMOE", "Hamburg Mönckebergstraße", "Hamburg", "DE", "Europe/Berlin"),
    ("PARRIV", "Paris Rivoli", "Paris", "FR", "Europe/Paris"),
    ("LYOPAR", "Lyon Part-Dieu", "Lyon", "FR", "Europe/Paris"),
    ("MADSOL", "Madrid Sol", "Madrid", "ES", "Europe/Madrid"),
    ("BCNDIA", "Barcelona Diagonal", "Barcelona", "ES", "Europe/Madrid"),
    ("NYCSOH", "New York SoHo", "New York", "US", "America/New_York"),
    ("SFOUNI", "San Francisco Union Sq", "San Francisco", "US", "America/Los_Angeles"),
    ("CHIMAG", "Chicago Magnificent Mile", "Chicago", "US", "America/Chicago"),
    ("BOMPHX", "Mumbai Phoenix Mills", "Mumbai", "IN", "Asia/Kolkata"),
    ("BLRUBC", "Bengaluru UB City", "Bengaluru", "IN", "Asia/Kolkata"),
]

EMAIL_DOMAINS = {
    "GB": [("gmail.com", 33), ("hotmail.co.uk", 12), ("outlook.com", 10), ("yahoo.co.uk", 8), ("icloud.com", 10),
           ("btinternet.com", 6), ("googlemail.com", 4), ("sky.com", 4), ("live.co.uk", 4), ("aol.com", 2),
           ("virginmedia.com", 3), ("talktalk.net", 2)],
    "US": [("gmail.com", 45), ("yahoo.com", 12), ("outlook.com", 8), ("hotmail.com", 8), ("icloud.com", 12),
           ("aol.com", 5), ("comcast.net", 4), ("att.net", 2)],
    "DE": [("gmail.com", 20), ("web.de", 20), ("gmx.de", 18), ("t-online.de", 12), ("outlook.de", 5),
           ("yahoo.de", 5), ("icloud.com", 5), ("posteo.de", 3), ("gmx.net", 5)],
    "FR": [("gmail.com", 30), ("orange.fr", 15), ("free.fr", 10), ("hotmail.fr", 12), ("laposte.net", 8),
           ("sfr.fr", 8), ("yahoo.fr", 7), ("wanadoo.fr", 4)],
    "ES": [("gmail.com", 42), ("hotmail.es", 20), ("yahoo.es", 10), ("outlook.es", 10), ("telefonica.net", 5),
           ("icloud.com", 5)],
    "IN": [("gmail.com", 62), ("yahoo.co.in", 14), ("rediffmail.com", 8), ("outlook.com", 8), ("hotmail.com", 5)],
    "IE": [("gmail.com", 40), ("eircom.net", 10), ("hotmail.com", 15), ("outlook.ie", 10), ("icloud.com", 10),
           ("yahoo.ie", 5)],
}
WORK_DOMAINS = _split("nhs.net, ac.uk.example-uni.ac.uk, brightwell-logistics.co.uk, harrowgate.com, "
                      "northfield-partners.com, veltra.de, lumiere-conseil.fr, castell-group.es, infosys-mail.in, "
                      "corkharbour.ie, acmeanalytics.com")
EMAIL_WORDS = _split("sunnyday, bluefox, moonlight, cheeky, footie, gardenlover, dreamer, tigerlily, rockstar, "
                     "bookworm, skywalker, happyfeet, coffeelover, runner, wanderlust, starlight, gamer, "
                     "kitkat, pixie, dragonfly, nightowl, surfer, cupcake, wolfpack")
DOMAIN_TYPOS = {
    "gmail.com": ["gmial.com", "gmail.co", "gmal.com", "gmail.con", "gnail.com", "gmail.co.uk"],
    "googlemail.com": ["googlemail.co.uk", "googlmail.com"],
    "hotmail.co.uk": ["hotmail.com", "hotmial.co.uk", "hotmail.co"], "hotmail.com": ["hotmial.com", "hotmail.co"],
    "yahoo.co.uk": ["yahoo.com", "yaho.co.uk"], "yahoo.com": ["yahooo.com", "yaho.com"],
    "outlook.com": ["outlok.com", "outlook.co.uk"], "btinternet.com": ["btinternet.co.uk", "btinternett.com"],
    "icloud.com": ["icould.com", "iclould.com"], "web.de": ["web.com", "wed.de"], "gmx.de": ["gmx.com"],
    "orange.fr": ["orange.com"], "hotmail.fr": ["hotmail.com"], "hotmail.es": ["hotmail.com"],
    "sky.com": ["sky.co.uk", "skye.com"], "talktalk.net": ["talktalk.com", "talktalk.co.uk"],
    "virginmedia.com": ["virgin.com", "virginmedia.co.uk"], "live.co.uk": ["live.com", "live.uk"],
    "aol.com": ["aol.co.uk"], "outlook.ie": ["outlook.com"], "eircom.net": ["eircom.com"],
}
PLACEHOLDER_EMAILS = _split("noemail@noemail.com, noemail@example.com, none@none.com, na@na.com, no@email.com, "
                            "n/a, x@x.com, noemail@thestore.co.uk, declined@noemail.co.uk, NONE, unknown@unknown.com")
PLACEHOLDER_PHONES = _split("0000000000, 00000000000, 123456789, 1234567890, n/a, 07000000000, 0, none, "
                            "9999999999, 01234567890, N/A")
MAILBOX_PATTERNS = ["the{s}s", "{s}.family", "{s}family", "{s}home", "the{s}family", "{s}.household",
                    "{a}and{b}", "{s}s{n}", "{a}.{b}.{s}"]
MAILBOX_LOCAL = {"german": "familie.{s}", "french": "famille.{s}", "spanish": "familia.{s}",
                 "italian": "famiglia.{s}", "polish": "rodzina.{s}"}
PAGES = _split("/, /sale, /c/women, /c/men, /c/kids, /c/home, /c/shoes, /c/beauty, /search, /basket, /checkout, "
               "/account, /account/orders, /help/delivery, /help/returns, /stores, /p/{n}, /p/{n}, /p/{n}, /p/{n}")
CASE_TOPICS = _split("delivery, refund, damaged item, missing parcel, loyalty points, account access, "
                     "order change, complaint, product question, payment")


# ----------------------------------------------------------------------------------------------------------
# small helpers

class Zipf:
    """Choice from a list where earlier entries are more common (as names are)."""

    def __init__(self, items, s: float = 0.9, offset: float = 2.0):
        self.items = list(items)
        self.cum = list(accumulate(1.0 / (i + offset) ** s for i in range(len(self.items))))

    def __call__(self, rng: Random):
        return rng.choices(self.items, cum_weights=self.cum)[0]


def wchoice(rng: Random, pairs):
    items = [p[0] for p in pairs]
    return rng.choices(items, weights=[p[1] for p in pairs])[0]


_FOLD = {"ß": "ss", "ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "đ": "d", "ı": "i",
         "İ": "I", "œ": "oe"}


def fold(text: str, german: bool = False) -> str:
    """Drops accents (ü -> u, or ü -> ue the German way)."""
    if german:
        for a, b in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("Ä", "Ae"), ("Ö", "Oe"), ("Ü", "Ue")):
            text = text.replace(a, b)
    text = "".join(_FOLD.get(ch, ch) for ch in text)
    text = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in text if not unicodedata.combining(ch))


def slug(text: str, german: bool = False) -> str:
    return "".join(ch for ch in fold(text, german).lower() if ch.isalnum())


def digit_typo(rng: Random, text: str) -> str:
    pos = [i for i, ch in enumerate(text) if ch.isdigit()]
    if not pos:
        return text
    i = rng.choice(pos)
    if rng.random() < 0.5 and i + 1 < len(text) and text[i + 1].isdigit() and text[i] != text[i + 1]:
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    return text[:i] + rng.choice([d for d in "0123456789" if d != text[i]]) + text[i + 1:]


def digits(rng: Random, n: int, first: str = "0123456789") -> str:
    return rng.choice(first) + "".join(rng.choice("0123456789") for _ in range(n - 1))


def hexid(rng: Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def uuid_like(rng: Random, upper: bool = False) -> str:
    h = hexid(rng, 32)
    h = h[:12] + "4" + h[13:16] + rng.choice("89ab") + h[17:]
    s = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
    return s.upper() if upper else s


# ----------------------------------------------------------------------------------------------------------
# phones

CC = {"GB": "44", "US": "1", "DE": "49", "FR": "33", "ES": "34", "IN": "91", "IE": "353"}
TRUNK = {"GB": "0", "DE": "0", "FR": "0", "IN": "0", "IE": "0", "US": "", "ES": ""}


@dataclass(eq=False)
class Phone:
    country: str
    kind: str          # mobile | landline
    groups: tuple      # the national significant number in its natural groups
    test: bool = False  # in a drama / test range

    @property
    def nsn(self) -> str:
        return "".join(self.groups)

    def e164(self) -> str:
        return "+" + CC[self.country] + self.nsn

    def national(self) -> list[str]:
        g, c = list(self.groups), self.country
        if c == "US":
            a, b, d = g
            return [f"({a}) {b}-{d}", f"({a}) {b}-{d}", f"{a}-{b}-{d}", f"{a}.{b}.{d}", f"{a}{b}{d}",
                    f"{a} {b} {d}", f"1-{a}-{b}-{d}", f"1 ({a}) {b}-{d}"]
        head = TRUNK[c] + g[0]
        rest = g[1:]
        forms = [" ".join([head] + rest)] * 3 + ["".join([head] + rest), "-".join([head] + rest)]
        if c == "GB":
            forms.append(f"({head}) " + " ".join(rest))
            if g[0] == "20":
                forms.append(f"020{rest[0][0]} {rest[0][1:]} {rest[1]}")  # the "0207" habit
            if self.kind == "mobile":
                n = self.nsn
                forms += [f"0{n[:3]} {n[3:6]} {n[6:]}", f"0{n[:4]} {n[4:7]} {n[7:]}"]
        elif c == "DE":
            forms += [f"{head}/" + "".join(rest), f"({head}) " + "".join(rest), f"{head} " + "".join(rest)]
        elif c == "FR":
            forms += [".".join([head] + rest)] * 2
        elif c == "ES":
            n = self.nsn
            forms += [f"{n[:3]} {n[3:5]} {n[5:7]} {n[7:]}", f"{n[:3]} {n[3:6]} {n[6:]}"]
        elif c == "IN":
            forms += [" ".join(g), "".join(g), "-".join(g)]
        elif c == "IE":
            forms.append(f"({head}) " + "".join(rest))
        return forms

    def international(self) -> list[str]:
        g, c, cc = list(self.groups), self.country, CC[self.country]
        sp = " ".join(g)
        forms = [f"+{cc} {sp}"] * 3 + [f"+{cc}{self.nsn}", f"00{cc} {sp}", f"00{cc}{self.nsn}",
                                       f"+{cc}-" + "-".join(g), f"00 {cc} {sp}"]
        if TRUNK[c]:
            forms.append(f"+{cc} (0){sp}")
        if c == "US":
            a, b, d = g
            forms += [f"+1 ({a}) {b}-{d}", f"+1-{a}-{b}-{d}", f"001 {a} {b} {d}", f"+1 {a}-{b}-{d}"]
        if c == "IN":
            forms += [f"+91-{self.nsn}", f"+91 {self.nsn}"]
        if c == "GB":
            forms += [f"+44 (0) {sp}", f"44 {sp}"]
        return forms


def write_phone(rng: Random, ph: Phone, writer: str, local: str = HOME) -> str:
    """A phone number as one writer writes it: the owner in a form, an agent, shop staff, or a system."""
    if writer == "system":
        return ph.e164()
    foreign = ph.country != local
    p_intl = {"self": (0.85, 0.2), "agent": (0.9, 0.05), "staff": (0.8, 0.03)}[writer][0 if foreign else 1]
    text = rng.choice(ph.international() if rng.random() < p_intl else ph.national())
    if writer != "self" and rng.random() < 0.015:
        text = digit_typo(rng, text)
    return text


# ----------------------------------------------------------------------------------------------------------
# the world

@dataclass(eq=False)
class Address:
    city: City
    number: str
    street: str
    flat: Optional[str]
    postcode: str
    extra: Optional[str] = None  # US ZIP+4 suffix, Indian building name

    @property
    def country(self) -> str:
        return self.city.country


@dataclass(eq=False)
class Device:
    did: str
    channel: str   # web | app
    kind: str      # laptop | phone_browser | app | tablet | family_laptop | tv | kiosk | pos
    start: int = T0_MS
    end: int = T1_MS
    never_login: bool = False
    users: list = field(default_factory=list)
    holder: Optional["Person"] = None  # the one who logs a shared TV app in


@dataclass(eq=False)
class Store:
    code: str
    name: str
    city: str
    country: str
    zone: str
    pos: list
    kiosks: list
    house_card: str


@dataclass(eq=False)
class Household:
    hid: str
    kind: str
    members: list = field(default_factory=list)
    homes: list = field(default_factory=list)  # [(start_ms, Address, landline Phone or None)]
    mailbox: Optional[str] = None
    mailbox_users: list = field(default_factory=list)
    devices: list = field(default_factory=list)  # shared web/app devices
    moves: int = 0
    marry_later: Optional[tuple] = None  # (wife, husband) of a cohabiting couple who marry during the two years

    def home_at(self, ms: int):
        cur = self.homes[0]
        for h in self.homes:
            if h[0] <= ms:
                cur = h
        return cur


@dataclass(eq=False)
class Person:
    idx: int
    pid: str
    household: Household
    culture: str
    sex: str
    first: str
    dob: date
    country: str
    zone: str
    preferred: Optional[str] = None
    surnames: list = field(default_factory=list)   # [(start_ms, surname)]
    emails: list = field(default_factory=list)     # [(start, end, address, habitual spelling)]
    work_email: Optional[str] = None
    mobiles: list = field(default_factory=list)    # [(start, end, Phone)]
    cards: list = field(default_factory=list)      # [(start, end, number, enrolled_in_window)]
    handle: Optional[str] = None
    devices: list = field(default_factory=list)    # personal web cookies and app installs
    teen: bool = False
    junior: bool = False
    twin: bool = False
    partner: Optional["Person"] = None
    persona: str = "mixed"
    new_customer: bool = False
    active: tuple = (T0_MS, T1_MS)
    signed_up: bool = False
    identified: dict = field(default_factory=dict)  # device id -> True once logged in there
    home_store: Optional[Store] = None
    uses_mailbox: bool = False
    target: int = 0
    card_replaced_at: Optional[int] = None

    def surname_at(self, ms: int, lag_p: float = 0.0, rng: Optional[Random] = None) -> str:
        cur, prev, since = self.surnames[0][1], None, None
        for start, name in self.surnames:
            if start <= ms:
                prev, cur, since = cur, name, start
        if prev is not None and prev != cur and rng is not None and since is not None:
            recent = ms - since < 150 * DAY_MS
            if rng.random() < (lag_p if recent else lag_p / 6):
                return prev
        return cur

    def email_at(self, ms: int):
        for e in self.emails:
            if e[0] <= ms < e[1]:
                return e
        return None

    def mobile_at(self, ms: int) -> Optional[Phone]:
        for m in self.mobiles:
            if m[0] <= ms < m[1]:
                return m[2]
        return None

    def card_at(self, ms: int) -> Optional[str]:
        for c in self.cards:
            if c[0] <= ms < c[1]:
                return c[2]
        return None

    @property
    def hh_id(self) -> str:
        return "" if self.household.kind == "single" else self.household.hid


class World:
    def __init__(self, people: int, seed: int):
        self.rng = Random(seed)
        self.n_people = people
        self.persons: list[Person] = []
        self.households: list[Household] = []
        self.taken: set = set()  # e-mails, phone numbers, card numbers, ids already issued (membership only)
        self.events: list = []   # (ms, seq, person, record)
        self.seq = 0
        self.case_no = 0
        self.order_no = 0
        self.stats_traits: dict[str, int] = {}
        self.names = {c: {g: Zipf(v) for g, v in d.items()} for c, d in CULTURES.items()}
        self.buildings: dict[str, list] = {}
        self.stores = self._stores()

    def trait(self, name: str, n: int = 1):
        self.stats_traits[name] = self.stats_traits.get(name, 0) + n

    def unique(self, make):
        for _ in range(1000):
            v = make()
            if v not in self.taken:
                self.taken.add(v)
                return v
        raise RuntimeError("could not draw a unique value")

    # -- places --------------------------------------------------------------------------------------------

    def _stores(self) -> list[Store]:
        r = self.rng
        out = []
        for code, name, city, country, zone in STORES:
            pos = [Device(f"POS-{code}-{i:02d}", "store", "pos") for i in range(1, r.randint(2, 5))]
            kiosks = [Device(f"kiosk-{code.lower()}-{i}", "web", "kiosk") for i in range(1, r.randint(2, 3))]
            card = self.unique(lambda: digits(r, 8, "123456789"))
            out.append(Store(code, name, city, country, zone, pos, kiosks, card))
        return out

    def city(self, country: str) -> City:
        cs = CITIES[country]
        return self.rng.choices(cs, weights=[c.weight for c in cs])[0]

    def postcode(self, city: City) -> tuple[str, Optional[str]]:
        r, p = self.rng, city.post
        kind = p[0]
        if kind == "gb":
            letters = "ABDEFGHJLNPQRSTUWXYZ"
            return f"{r.choice(p[1])}{r.randint(1, p[2])} {r.randint(1, 9)}{r.choice(letters)}{r.choice(letters)}", None
        if kind == "us":
            return f"{p[1]}{r.randint(1, 99):02d}", f"{r.randint(1, 9999):04d}"
        if kind == "range":
            return f"{r.randint(p[1], p[2]):05d}", None
        if kind == "list":
            return r.choice(p[1:]), None
        if kind == "paris":
            return f"750{r.randint(1, 20):02d}", None
        if kind == "in":
            return f"{p[1]}{r.randint(1, 99):02d}", None
        if kind == "ie":
            key = f"D{r.randint(1, 24):02d}" if p[1] == "D" else p[1]
            chars = "ACDEFHKNPRTVWXY0123456789"
            return f"{key} {''.join(r.choice(chars) for _ in range(4))}", None
        raise ValueError(kind)

    def address(self, city: City) -> Address:
        r = self.rng
        c = city.country
        pool = self.buildings.setdefault(city.name, [])
        if pool and r.random() < 0.12:  # another flat in a building where a customer already lives
            base = r.choice(pool)
            flat = str(r.randint(1, 40)) if c != "ES" else f"{r.randint(1, 8)}º {r.choice('ABCD')}"
            self.trait("addresses_in_shared_buildings")
            return Address(city, base.number, base.street, flat, base.postcode, base.extra)
        street = r.choice(STREETS[c])
        number = str(r.randint(1, 180 if c != "US" else 4800))
        flat = None
        extra = None
        if c == "GB" and r.random() < 0.3:
            flat = str(r.randint(1, 24))
        elif c == "US" and r.random() < 0.4:
            flat = f"{r.randint(1, 20)}{r.choice('ABCDEF')}"
        elif c in ("DE", "FR", "IE") and r.random() < 0.2:
            flat = str(r.randint(1, 30))
        elif c == "ES":
            flat = f"{r.randint(1, 8)}º {r.choice('ABCD')}"
        elif c == "IN":
            flat = str(r.choice([r.randint(101, 1204), r.randint(1, 60)]))
            extra = r.choice(IN_BUILDINGS) if r.random() < 0.6 else None
        if c == "FR" and r.random() < 0.05:
            number += " bis"
        post, zip4 = self.postcode(city)
        addr = Address(city, number, street, flat, post, zip4 if c == "US" else extra)
        if flat:
            pool.append(addr)
        return addr

    def landline(self, city: City, test: bool = False) -> Phone:
        r, c = self.rng, city.country
        if c == "US":
            area = r.choice(city.land)
            if test:
                make = lambda: Phone("US", "landline", (area, "555", "01" + digits(r, 2)), True)  # noqa: E731
            else:
                def make():
                    ex = digits(r, 3, "23456789")
                    while ex == "555" or ex[1:] == "11":
                        ex = digits(r, 3, "23456789")
                    return Phone("US", "landline", (area, ex, digits(r, 4)))
            return self._unique_phone(make, (lambda: self.landline(city)) if test else None)
        area, n = city.land

        def make():
            if test and city.test_land:
                a, pre = city.test_land
                return self._group(c, "landline", a, pre + digits(r, n - len(pre)), True)
            if test and c == "GB":
                return Phone("GB", "landline", ("1632", "960" + digits(r, 3)), True)
            return self._group(c, "landline", area, digits(r, n, "23456789"), False)
        return self._unique_phone(make, (lambda: self.landline(city)) if test else None)

    @staticmethod
    def _group(c: str, kind: str, area: str, local: str, test: bool) -> Phone:
        if c == "GB":
            g = (area, local[:4], local[4:]) if len(area) == 2 else (area, local[:3], local[3:]) if len(area) == 3 \
                else (area, local)
        elif c == "FR":
            d = area + local
            g = (d[0], d[1:3], d[3:5], d[5:7], d[7:9])
        elif c == "ES":
            d = area + local
            g = (d[:2], d[2:5], d[5:7], d[7:])
        elif c == "IN":
            g = (area, local[:4], local[4:])
        elif c == "IE":
            g = (area, local[:3], local[3:])
        else:  # DE
            g = (area, local)
        return Phone(c, kind, g, test)

    def mobile(self, country: str, test: bool = False) -> Phone:
        r = self.rng

        def make():
            if country == "GB":
                n = ("7700900" + digits(r, 3)) if test else ("7" + r.choice("45789") + digits(r, 8))
                return Phone("GB", "mobile", (n[:4], n[4:]), test)
            if country == "US":
                city = self.city("US")
                area = r.choice(city.land)
                if test:
                    return Phone("US", "mobile", (area, "555", "01" + digits(r, 2)), True)
                ex = digits(r, 3, "23456789")
                while ex == "555" or ex[1:] == "11":
                    ex = digits(r, 3, "23456789")
                return Phone("US", "mobile", (area, ex, digits(r, 4)))
            if country == "DE":
                if r.random() < 0.6:
                    n = "15" + r.choice("1279") + digits(r, 8)
                    return Phone("DE", "mobile", (n[:4], n[4:]))
                n = "17" + r.choice("0123456789") + digits(r, 7 + r.randint(0, 1))
                return Phone("DE", "mobile", (n[:3], n[3:]))
            if country == "FR":
                n = ("63998" + digits(r, 4)) if test else (r.choice("67") + digits(r, 8))
                return Phone("FR", "mobile", (n[0], n[1:3], n[3:5], n[5:7], n[7:9]), test)
            if country == "ES":
                n = r.choice("67") + digits(r, 8)
                return Phone("ES", "mobile", (n[:3], n[3:6], n[6:]))
            if country == "IN":
                n = r.choice("6789") + digits(r, 9)
                return Phone("IN", "mobile", (n[:5], n[5:]))
            if country == "IE":
                n = "8" + r.choice("35679") + digits(r, 7)
                return Phone("IE", "mobile", (n[:2], n[2:5], n[5:]))
            raise ValueError(country)
        return self._unique_phone(make, (lambda: self.mobile(country)) if test else None)

    def _unique_phone(self, make, instead=None) -> Phone:
        """A number ``make`` gives that nobody has yet; ``instead`` gives one when 1,000 tries found none (a
        range reserved for tests holds only 100 to 10,000 numbers: a large corpus uses them up)."""
        for _ in range(1000):
            ph = make()
            key = "tel:" + ph.e164()
            if key not in self.taken:
                self.taken.add(key)
                if ph.test:
                    self.trait("phones_in_test_ranges")
                return ph
        if instead is not None:
            return instead()
        raise RuntimeError("phone space exhausted")

    # -- people --------------------------------------------------------------------------------------------

    def surname(self, culture: str, sex: str) -> str:
        r = self.rng
        s = self.names[culture]["s"](r)
        if culture == "spanish":
            s2 = self.names[culture]["s"](r)
            while s2 == s:
                s2 = self.names[culture]["s"](r)
            s = f"{s} {s2}"
        return self.gendered(s, culture, sex)

    @staticmethod
    def gendered(s: str, culture: str, sex: str) -> str:
        if culture == "polish" and sex == "f":
            for a, b in (("ski", "ska"), ("cki", "cka"), ("dzki", "dzka")):
                if s.endswith(a):
                    return s[: -len(a)] + b
        if culture == "indian" and sex == "f" and s == "Singh":
            return "Kaur"
        return s

    def first_name(self, culture: str, sex: str) -> str:
        return self.names[culture][sex](self.rng)

    def new_person(self, hh: Household, culture: str, sex: str, dob: date, surname: str, country: str,
                   zone: str, first: Optional[str] = None) -> Person:
        r = self.rng
        idx = len(self.persons)
        p = Person(idx, f"P{idx + 1:06d}", hh, culture, sex, first or self.first_name(culture, sex), dob,
                   country, zone)
        p.surnames = [(T0_MS - 40 * 365 * DAY_MS, surname)]
        age = 2023 - dob.year
        p.teen = age < 18
        nick = NICKNAMES.get(p.first)
        if nick and r.random() < 0.4:
            p.preferred = r.choice(nick)
        elif culture == "chinese" and country in ("GB", "US") and r.random() < 0.35:
            p.preferred = r.choice(CHINESE_ENGLISH[sex])
        self.persons.append(p)
        hh.members.append(p)
        return p

    def dob(self, age_lo: int, age_hi: int) -> date:
        r = self.rng
        year = 2023 - r.randint(age_lo, age_hi)
        return date(year, 1, 1) + timedelta(days=r.randrange(365))

    def household(self, remaining: int) -> Household:
        r = self.rng
        kind = wchoice(r, [("single", 31), ("couple", 27), ("family", 22), ("single_parent", 8),
                           ("flatshare", 6), ("multigen", 6)])
        hh = Household(f"H{len(self.households) + 1:05d}", kind)
        self.households.append(hh)
        country = wchoice(r, COUNTRY_MIX)
        city = self.city(country)
        zone = city.zone
        culture = wchoice(r, CULTURE_MIX[country])

        def other_culture():
            return culture if r.random() < 0.85 else wchoice(r, CULTURE_MIX[country])

        def adult(cult, sex, lo, hi, surname=None, first=None):
            return self.new_person(hh, cult, sex, self.dob(lo, hi), surname or self.surname(cult, sex), country,
                                   zone, first)

        def couple(lo, hi):
            sex_a = r.choice("mf")
            sex_b = sex_a if r.random() < 0.07 else ("f" if sex_a == "m" else "m")
            a = adult(culture, sex_a, lo, hi)
            cult_b = other_culture()
            age_a = 2023 - a.dob.year
            b = adult(cult_b, sex_b, max(18, age_a - 6), min(95, age_a + 6))
            a.partner, b.partner = b, a
            # the wife (or, rarely, the husband) already took the other's name
            wife, husband = (b, a) if sex_b == "f" else (a, b)
            married = r.random() < 0.7
            if sex_a != sex_b and married and r.random() < TAKES_NAME.get(wife.culture, 0.5):
                taker, giver = (wife, husband) if r.random() < 0.94 else (husband, wife)
                taker.surnames = [(taker.surnames[0][0], self.gendered(giver.surnames[0][1].split(" ")[0]
                                                                       if giver.culture == "spanish"
                                                                       else giver.surnames[0][1],
                                                                       taker.culture, taker.sex))]
            elif not married and sex_a != sex_b and r.random() < 0.4:
                hh.marry_later = (wife, husband)
            return a, b

        def children(parents, n):
            father = next((p for p in parents if p.sex == "m"), parents[0])
            mother = next((p for p in parents if p.sex == "f"), None)
            youngest_parent = max(p.dob.year for p in parents)
            kids = []
            twins = n >= 2 and r.random() < 0.15
            junior_done = False
            for i in range(n):
                sex = r.choice("mf")
                kcult = father.culture if r.random() < 0.8 or country not in ("GB", "US", "IE") else "english"
                if father.culture == "spanish" and mother is not None:
                    sur = father.surnames[0][1].split(" ")[0] + " " + mother.surnames[-1][1].split(" ")[0]
                else:
                    sur = self.gendered(father.surnames[0][1], father.culture, sex)
                first = None
                if (sex == "m" and father.sex == "m" and not junior_done and kcult == "english"
                        and r.random() < (0.3 if country == "US" else 0.12)):
                    first = father.first
                if twins and i == 1:
                    kid = self.new_person(hh, kcult, sex, kids[0].dob, sur, country, zone)
                    while kid.first == kids[0].first:
                        kid.first = self.first_name(kcult, sex)
                    kid.twin = kids[0].twin = True
                    self.trait("twin_pairs")
                else:
                    lo = max(13, 2023 - youngest_parent - 42)
                    hi = max(lo, min(32, 2023 - youngest_parent - 19))
                    kid = self.new_person(hh, kcult, sex, self.dob(lo, hi), sur, country, zone, first)
                if first:
                    kid.junior = True
                    junior_done = True
                    self.trait("juniors")
                kids.append(kid)
            return kids

        if kind == "single":
            adult(culture, r.choice("mf"), 18, 88)
        elif kind == "couple":
            couple(20, 85)
        elif kind == "family":
            a, b = couple(35, 62)
            children([a, b], r.choice([1, 1, 2, 2, 2, 3]))
        elif kind == "single_parent":
            a = adult(culture, r.choice("fffm"), 33, 60)
            children([a], r.choice([1, 1, 2]))
        elif kind == "flatshare":
            for _ in range(r.choice([2, 2, 3, 4])):
                adult(wchoice(r, CULTURE_MIX[country]), r.choice("mf"), 19, 34)
        else:  # multigen: a couple, a grown child, a grandparent
            a, b = couple(45, 65)
            children([a, b], 1)
            gp = a if r.random() < 0.5 else b
            adult(gp.culture, r.choice("mf"), 72, 94, surname=gp.surnames[0][1])
        # trim to the people still wanted
        while len(hh.members) > remaining:
            p = hh.members.pop()
            self.persons.pop()
            if p.partner is not None:
                p.partner.partner = None
        if len(hh.members) == 1 and kind != "single":
            hh.kind = "single"
        # home, landline, moves
        addr = self.address(city)
        p_land = {"GB": 0.45, "IE": 0.35, "DE": 0.55, "FR": 0.45, "ES": 0.4, "US": 0.2, "IN": 0.25}[country]
        oldest = min(p.dob.year for p in hh.members)
        if 2023 - oldest > 65:
            p_land += 0.3
        land = self.landline(city, test=r.random() < 0.08) if r.random() < p_land else None
        hh.homes = [(T0_MS - 5 * 365 * DAY_MS, addr, land)]
        n_moves = 0 if r.random() < 0.85 else 1 if r.random() < 0.85 else 2
        t = T0_MS
        for _ in range(n_moves):
            t = r.randint(t + 30 * DAY_MS, T1_MS - 60 * DAY_MS) if t + 30 * DAY_MS < T1_MS - 60 * DAY_MS else t
            if t >= T1_MS - 60 * DAY_MS:
                break
            same_city = r.random() < 0.55
            new_city = city if same_city else (self.city(country) if r.random() < 0.93 else
                                                self.city(wchoice(r, COUNTRY_MIX)))
            new_addr = self.address(new_city)
            old_land = hh.homes[-1][2]
            if old_land is not None and same_city and r.random() < 0.3:
                new_land = old_land
            elif old_land is not None or r.random() < 0.1:
                new_land = self.landline(new_city, test=r.random() < 0.08) if r.random() < 0.85 else None
            else:
                new_land = None
            hh.homes.append((t, new_addr, new_land))
            hh.moves += 1
            city = new_city
            if new_city.country != country:
                self.trait("households_moving_abroad")
        if hh.moves:
            self.trait("households_moving", 1)
        return hh

    def person_details(self, p: Person):
        """Contact points, cards, devices, life events of one person."""
        r = self.rng
        hh = p.household
        age = 2023 - p.dob.year
        # active period: existing customers, newcomers, leavers
        u = r.random()
        a0, a1 = T0_MS, T1_MS
        if u < 0.25:
            a0 = T0_MS + r.randrange(int(DAYS * 0.8)) * DAY_MS
            p.new_customer = True
        elif u < 0.35:
            a1 = T0_MS + r.randrange(int(DAYS * 0.3), DAYS) * DAY_MS
        p.active = (a0, a1)
        # e-mail addresses
        p_email = 0.85 if p.teen else 0.7 if age > 72 else 0.95
        if r.random() < p_email:
            addr = self.personal_email(p, p.country)
            p.emails = [(T0_MS - 10 * 365 * DAY_MS, T1_MS + DAY_MS, addr, self.habit(addr))]
            if r.random() < 0.10 and p.active[1] - p.active[0] > 120 * DAY_MS:
                t = r.randint(p.active[0] + 30 * DAY_MS, p.active[1] - 30 * DAY_MS)
                self.change_email(p, t)
                self.trait("email_changes")
        if not p.teen and age < 67 and r.random() < 0.1:
            p.work_email = self.unique(lambda: f"{slug(p.first)}.{slug(p.surnames[0][1])}"
                                               f"{r.choice(['', '', str(r.randint(1, 9))])}@{r.choice(WORK_DOMAINS)}")
        # mobile phones
        if r.random() < (0.88 if p.teen else 0.82 if age > 75 else 0.97):
            country = p.country
            home_c = CULTURE_PHONE.get(p.culture)
            if home_c and home_c != p.country and r.random() < (0.5 if home_c == "GB" else 0.2):
                country = home_c
                self.trait("expats_with_home_country_mobile")
            test = r.random() < {"GB": 0.07, "US": 0.1, "FR": 0.04}.get(country, 0.0)
            p.mobiles = [(T0_MS - 5 * 365 * DAY_MS, T1_MS + DAY_MS, self.mobile(country, test))]
            if r.random() < 0.12:
                t = r.randint(T0_MS + 20 * DAY_MS, T1_MS - 20 * DAY_MS)
                s, _, old = p.mobiles[0]
                p.mobiles = [(s, t, old), (t, T1_MS + DAY_MS, self.mobile(p.country, test and r.random() < 0.5))]
                self.trait("new_mobile_numbers")
        # social handle
        if r.random() < (0.7 if p.teen else 0.45 if age < 45 else 0.2):
            p.handle = self.unique(lambda: self.make_handle(p))
        # loyalty card
        if r.random() < (0.15 if p.teen else 0.45):
            num = self.unique(lambda: digits(r, 8, "123456789"))
            if p.new_customer or r.random() < 0.2:
                start = r.randint(p.active[0], max(p.active[0], min(p.active[1], T1_MS) - 20 * DAY_MS))
                p.cards = [(start, T1_MS + DAY_MS, num, True)]
            else:
                p.cards = [(T0_MS - 3 * 365 * DAY_MS, T1_MS + DAY_MS, num, False)]
            if r.random() < 0.06:
                s, _, old, enr = p.cards[0]
                t = r.randint(max(s, T0_MS) + 20 * DAY_MS, T1_MS - 10 * DAY_MS) if max(s, T0_MS) + 20 * DAY_MS < \
                    T1_MS - 10 * DAY_MS else None
                if t:
                    p.cards = [(s, t, old, enr), (t, T1_MS + DAY_MS, self.unique(lambda: digits(r, 8, "123456789")),
                                                  False)]
                    p.card_replaced_at = t
                    self.trait("replaced_loyalty_cards")
        # devices: browser cookies (cleared now and then), a phone browser, an app install
        for kind, p_have, never in (("laptop", 0.75, 0.08), ("phone_browser", 0.7, 0.45)):
            if r.random() < p_have:
                t = T0_MS - r.randrange(300) * DAY_MS
                while t < T1_MS:
                    life = int(r.expovariate(1 / 260) * DAY_MS) + 7 * DAY_MS
                    p.devices.append(Device(uuid_like(r), "web", kind, t, t + life, r.random() < never, [p]))
                    t += life
        if r.random() < (0.7 if p.teen else 0.5 if age < 60 else 0.25):
            ios = r.random() < 0.5
            did = uuid_like(r, upper=True) if ios else hexid(r, 16)
            p.devices.append(Device(did, "app", "app", T0_MS - 200 * DAY_MS, T1_MS + DAY_MS, False, [p]))
        # persona and volume
        p.persona = wchoice(r, [("digital", 35 + (30 if p.teen else 0)), ("shopper", 25), ("mixed", 30),
                                ("phone", 4 + (25 if age > 65 else 0))])
        u = r.random()
        if u < 0.12:
            p.target = r.randint(1, 2)
        elif u < 0.9:
            p.target = int(math.exp(r.uniform(math.log(3), math.log(31))))
        else:
            p.target = int(math.exp(r.uniform(math.log(31), math.log(90))))
        # the shop they use
        local = [s for s in self.stores if s.city == hh.homes[0][1].city.name]
        national = [s for s in self.stores if s.country == hh.homes[0][1].country]
        p.home_store = r.choice(local or national or self.stores)

    def personal_email(self, p: Person, country: str) -> str:
        r = self.rng
        german = p.culture == "german"
        f = slug(p.preferred if p.preferred and r.random() < 0.3 else p.first, german)
        ln = slug(p.surnames[-1][1].split(" ")[0], german)
        yy = f"{p.dob.year % 100:02d}"
        pattern = wchoice(r, [("{f}.{l}", 22), ("{f}{l}", 12), ("{f}_{l}", 5), ("{fi}{l}", 10), ("{fi}.{l}", 5),
                              ("{f}.{l}{yy}", 8), ("{f}{l}{n}", 8), ("{l}.{f}", 4), ("{f}{yy}", 6),
                              ("{f}.{li}", 3), ("{w}{n}", 6), ("{w}_{f}", 3), ("{f}{y}", 4), ("{l}{fi}", 4)])
        dom = wchoice(r, EMAIL_DOMAINS[country])

        def make():
            local = pattern.format(f=f, l=ln, fi=f[:1], li=ln[:1], yy=yy, y=p.dob.year, n=r.randint(1, 999),
                                   w=r.choice(EMAIL_WORDS))
            return f"{local}@{dom}"
        addr = make()
        if addr in self.taken:
            addr = self.unique(lambda: make().replace("@", f"{r.randint(1, 99)}@"))
        else:
            self.taken.add(addr)
        return addr

    def habit(self, addr: str) -> str:
        """How the owner habitually types an address: plain, Capitalised, with a +tag, without gmail dots."""
        r = self.rng
        local, dom = addr.split("@")
        u = r.random()
        if dom in ("gmail.com", "googlemail.com", "outlook.com") and u < 0.12:
            local += "+" + r.choice(["shop", "offers", "loyalty", "newsletter", "store", "deals"])
        elif dom == "gmail.com" and u < 0.2:
            local = local.replace(".", "") if "." in local else local[: len(local) // 2] + "." + local[len(local) // 2:]
        if r.random() < 0.15:
            local = ".".join(x[:1].upper() + x[1:] for x in local.split("."))
            if r.random() < 0.5:
                dom = dom[:1].upper() + dom[1:]
        return f"{local}@{dom}"

    def change_email(self, p: Person, t: int):
        s, _, old, habit = p.emails[-1]
        country = p.country
        new = self.personal_email(p, country)
        tries = 0
        while new.split("@")[1] == old.split("@")[1] and tries < 5:
            self.taken.discard(new)
            new = self.personal_email(p, country)
            tries += 1
        p.emails[-1] = (s, t, old, habit)
        p.emails.append((t, T1_MS + DAY_MS, new, self.habit(new)))

    def make_handle(self, p: Person) -> str:
        r = self.rng
        f = slug(p.preferred or p.first)
        ln = slug(p.surnames[-1][1].split(" ")[0])
        h = r.choice([f"{f}_{ln}", f"{f}{ln}{p.dob.year % 100:02d}", f"{f[:1]}{ln}", f"{f}.{ln[:1]}",
                      f"{ln}y_{f[:1]}" if p.culture == "english" else f"{f}.{ln}", f"{r.choice(EMAIL_WORDS)}_{f}", f"{f}{r.randint(1, 9999)}",
                      f"the_real_{f}", f"{f}_{ln}{r.randint(1, 99)}"])
        if r.random() < 0.4:
            h = "".join(ch.upper() if i == 0 or (i > 0 and h[i - 1] in "_.") else ch for i, ch in enumerate(h))
        return "@" + h[:30]

    def build(self):
        r = self.rng
        while len(self.persons) < self.n_people:
            self.household(self.n_people - len(self.persons))
        for p in self.persons:
            self.person_details(p)
        for hh in self.households:
            self.household_details(hh)
        # marriages during the two years: cohabiting couples, and singles marrying someone not in the data
        for hh in self.households:
            pair = hh.marry_later
            if pair and all(x in hh.members for x in pair):
                wife, husband = pair
                t = r.randint(T0_MS + 30 * DAY_MS, T1_MS - 90 * DAY_MS)
                if r.random() < TAKES_NAME.get(wife.culture, 0.5) or wife.culture == "spanish":
                    taker, giver = (wife, husband) if r.random() < 0.93 else (husband, wife)
                    if taker.culture == "spanish":
                        continue
                    self.rename(taker, t, giver.surnames[-1][1], double=r.random() < 0.1)
        for p in self.persons:
            if (p.household.kind in ("single", "flatshare") and not p.teen and 22 <= 2023 - p.dob.year <= 45
                    and p.culture not in ("spanish", "chinese") and r.random() < 0.08):
                t = r.randint(max(p.active[0], T0_MS + 30 * DAY_MS), max(p.active[0] + DAY_MS, T1_MS - 90 * DAY_MS))
                spouse_culture = p.culture if r.random() < 0.7 else wchoice(r, CULTURE_MIX[p.country])
                self.rename(p, t, self.surname(spouse_culture, "m").split(" ")[0], double=r.random() < 0.1)

    def rename(self, p: Person, t: int, new: str, double: bool):
        r = self.rng
        old = p.surnames[-1][1]
        name = f"{old}-{new}" if double else self.gendered(new, p.culture, p.sex)
        if name == old:
            return
        p.surnames.append((t, name))
        self.trait("surname_changes")
        if p.emails and r.random() < 0.3 and p.emails[-1][0] < t:
            # a new address in the new name
            s, _, addr, habit = p.emails[-1]
            p.emails[-1] = (s, t + r.randrange(60) * DAY_MS, addr, habit)
            new_addr = self.personal_email(p, p.country)
            p.emails.append((p.emails[-1][1], T1_MS + DAY_MS, new_addr, self.habit(new_addr)))
            self.trait("email_changes")

    def household_details(self, hh: Household):
        r = self.rng
        members = hh.members
        if len(members) < 2:
            return
        adults = [m for m in members if not m.teen]
        family = hh.kind in ("couple", "family", "single_parent", "multigen")
        if family and r.random() < 0.25:
            head = adults[0] if adults else members[0]
            cult = head.culture
            sur = head.surnames[0][1]
            s = slug(sur.split(" ")[0] if cult == "spanish" else sur, cult == "german")
            other = next((m for m in members if m is not head), members[1])
            tmpl = MAILBOX_LOCAL[cult] if cult in MAILBOX_LOCAL and r.random() < 0.6 else r.choice(MAILBOX_PATTERNS)
            if tmpl == "the{s}s" and s.endswith("s"):
                tmpl = "the{s}es"
            local = tmpl.format(s=s, a=slug(head.preferred or head.first), b=slug(other.preferred or other.first),
                                n=r.randint(1, 99))
            dom = wchoice(r, EMAIL_DOMAINS[head.country])
            hh.mailbox = self.unique(lambda: f"{local}@{dom}" if f"{local}@{dom}" not in self.taken else
                                     f"{local}{r.randint(1, 999)}@{dom}")
            users = [m for m in members if not m.teen or r.random() < 0.5]
            if len(users) < 2:
                users = members[:2]
            hh.mailbox_users = users
            for m in users:
                m.uses_mailbox = True
            self.trait("family_mailboxes")
        if family and r.random() < 0.35:
            kind = "tablet"
            channel = "app" if r.random() < 0.6 else "web"
            did = uuid_like(r, upper=True) if channel == "app" and r.random() < 0.6 else uuid_like(r)
            hh.devices.append(Device(did, channel, kind, T0_MS - 100 * DAY_MS, T1_MS + DAY_MS, False, list(members)))
            self.trait("shared_family_tablets")
        if family and r.random() < 0.2:
            hh.devices.append(Device(uuid_like(r), "web", "family_laptop", T0_MS - 100 * DAY_MS, T1_MS + DAY_MS,
                                     r.random() < 0.2, list(members)))
            self.trait("shared_family_laptops")
        if r.random() < (0.22 if family else 0.1):
            tv = Device("tv-" + hexid(r, 16), "app", "tv", T0_MS - 100 * DAY_MS, T1_MS + DAY_MS, False, list(members))
            tv.holder = (adults or members)[0]
            hh.devices.append(tv)
            self.trait("shared_tv_apps")


# ----------------------------------------------------------------------------------------------------------
# how channels write what they see

def loyalty_spelling(rng: Random, num: str, writer: str) -> str:
    a, b = num[:4], num[4:]
    forms = {"printed": f"LY-{a}-{b}", "barcode": f"LY{a}{b}", "lower": f"ly{a}{b}", "spaced": f"{a} {b}",
             "digits": f"{a}{b}", "lyspace": f"LY {a} {b}", "lowerdash": f"ly-{a}-{b}", "dash": f"{a}-{b}",
             "lyspaced": f"LY{a} {b}"}
    weights = {
        "scan": [("barcode", 80), ("digits", 10), ("spaced", 6), ("lower", 4)],
        "system": [("printed", 85), ("barcode", 15)],
        "self": [("printed", 35), ("barcode", 12), ("lower", 10), ("spaced", 10), ("digits", 18), ("lyspace", 6),
                 ("lowerdash", 5), ("dash", 4)],
        "agent": [("spaced", 30), ("digits", 32), ("barcode", 12), ("lyspaced", 6), ("printed", 10), ("dash", 6),
                  ("lower", 4)],
    }[writer]
    text = forms[wchoice(rng, weights)]
    if writer == "agent" and rng.random() < 0.02:
        text = digit_typo(rng, text)
    return text


def email_typed(rng: Random, addr: str, habit: str, writer: str) -> str:
    """An address as a writer types it (the owner, or an agent who hears it)."""
    if writer == "self":
        if rng.random() < 0.8:
            text = habit
        else:
            local, dom = addr.split("@")
            if dom == "gmail.com" and rng.random() < 0.15:
                dom = "googlemail.com"
            text = f"{local}@{dom}"
            if rng.random() < 0.15:
                text = text.capitalize()
        if rng.random() < 0.01:
            text = text + " "
        if rng.random() < 0.01:
            text = text.upper()
        return text
    text = addr.lower()
    if rng.random() < 0.08:
        text = email_typo(rng, text)
    elif rng.random() < 0.05:
        text = text.upper()
    return text


def email_typo(rng: Random, addr: str) -> str:
    local, dom = addr.split("@")
    u = rng.random()
    if u < 0.3 and len(local) > 3:
        i = rng.randrange(len(local) - 1)
        local = local[:i] + local[i + 1] + local[i] + local[i + 2:]
    elif u < 0.5 and len(local) > 3:
        i = rng.randrange(len(local))
        local = local[:i] + local[i + 1:]
    elif u < 0.6:
        i = rng.randrange(len(local))
        local = local[:i] + local[i] + local[i:]
    elif u < 0.7 and "." in local:
        local = local.replace(".", rng.choice(["", "_"]), 1)
    elif dom in DOMAIN_TYPOS:
        dom = rng.choice(DOMAIN_TYPOS[dom])
    else:
        name, _, tld = dom.partition(".")
        i = rng.randrange(len(name))
        dom = f"{name[:i]}{name[i + 1:]}.{tld}" if len(name) > 3 else f"{name}.{tld.replace('.', '')}"
    return f"{local}@{dom}"


DOB_FORMATS = {
    "iso": lambda d: d.isoformat(),
    "dmy": lambda d: d.strftime("%d/%m/%Y"),
    "mdy": lambda d: d.strftime("%m/%d/%Y"),
    "dmy_dot": lambda d: d.strftime("%d.%m.%Y"),
    "d_mon_y": lambda d: f"{d.day} {d.strftime('%b')} {d.year}",
    "d_month_y": lambda d: f"{d.day} {d.strftime('%B')} {d.year}",
    "month_d_y": lambda d: f"{d.strftime('%B')} {d.day}, {d.year}",
    "dmy_short": lambda d: d.strftime("%d/%m/%y"),
    "year": lambda d: str(d.year),
    "year_jan1": lambda d: f"{d.year}-01-01",
    "dmy_dash": lambda d: d.strftime("%d-%m-%Y"),
}


def write_dob(rng: Random, d: date, writer: str, country: str) -> str:
    if writer == "web":
        fmt = wchoice(rng, [("iso", 92), ("year_jan1", 4), ("dmy", 4)])
    elif writer == "form":
        local = {"US": "mdy", "DE": "dmy_dot"}.get(country, "dmy")
        fmt = wchoice(rng, [(local, 55), ("iso", 20), ("d_mon_y", 8), ("d_month_y", 5), ("dmy_dash", 4),
                            ("year", 4), ("month_d_y", 4 if country == "US" else 0)])
    elif writer == "agent":
        fmt = wchoice(rng, [("d_mon_y", 28), ("dmy", 32), ("iso", 12), ("year", 12), ("dmy_short", 8),
                            ("d_month_y", 5), ("year_jan1", 3)])
    else:  # staff
        fmt = wchoice(rng, [("dmy", 40), ("year", 30), ("iso", 20), ("dmy_short", 10)])
    if writer in ("agent", "form", "staff") and fmt not in ("year", "year_jan1") and rng.random() < 0.03:
        d = dob_typo(rng, d)
    return DOB_FORMATS[fmt](d)


def dob_typo(rng: Random, d: date) -> date:
    """A mistyped but possible date: a day digit off, day and month swapped, year digits transposed."""
    options = []
    for day in (d.day + 1, d.day - 1, int(f"{d.day:02d}"[::-1]), d.day + 10, d.day - 10):
        options.append((d.year, d.month, day))
    options += [(d.year, d.day, d.month), (d.year + 1, d.month, d.day), (d.year - 1, d.month, d.day),
                (int(str(d.year)[:2] + str(d.year)[3] + str(d.year)[2]), d.month, d.day)]
    rng.shuffle(options)
    for y, m, day in options:
        try:
            new = date(y, m, day)
        except ValueError:
            continue
        if new != d and 1900 < y < 2015:
            return new
    return d


def by_ear(rng: Random, name: str, p: float) -> str:
    if rng.random() < p and name in BY_EAR:
        return rng.choice(BY_EAR[name])
    if rng.random() < p and fold(name) != name:
        return fold(name)
    return name


def spanish_surname(rng: Random, s: str) -> str:
    if " " not in s or "-" in s:
        return s
    a, b = s.split(" ", 1)
    return wchoice(rng, [(s, 55), (a, 30), (f"{a}-{b}", 8), (f"{a} {b[:1]}.", 3), (f"{a} y {b}", 4)])


def render_address(rng: Random, addr: Address, writer: str) -> str:
    c = addr.country
    street = addr.street
    if writer != "web" or rng.random() < 0.3:
        for a, b in ABBREV:
            if a in street and rng.random() < 0.5:
                street = street.replace(a, b)
                break
        if c == "DE" and "straße" in street and rng.random() < 0.3:
            street = street.replace("straße", "strasse")
    flat = addr.flat if (addr.flat and rng.random() < 0.8) else None
    if c == "GB":
        line = f"{addr.number} {street}"
        if flat:
            line = rng.choice([f"Flat {flat}, {line}", f"Flat {flat}, {line}", f"Flat {flat} {line}",
                               f"{flat}/{addr.number} {street}", f"Apartment {flat}, {line}"])
    elif c == "US":
        line = f"{addr.number} {street}"
        if flat:
            line = rng.choice([f"{line} Apt {flat}", f"{line}, Apt. {flat}", f"{line} #{flat}", f"{line} Unit {flat}"])
    elif c == "DE":
        line = f"{street} {addr.number}"
        if flat:
            line += rng.choice([f", Whg. {flat}", f" / {flat}"])
    elif c == "FR":
        line = rng.choice([f"{addr.number} {street}", f"{addr.number}, {street}"])
        if flat:
            line += f", apt {flat}"
    elif c == "ES":
        line = rng.choice([f"{street} {addr.number}", f"{street}, {addr.number}", f"{street} nº {addr.number}"])
        if flat:
            line += rng.choice([f", {flat}", f" {flat.replace('º', '')}", f", {flat.replace(' ', '')}"])
    elif c == "IN":
        parts = [f"Flat {flat}" if flat and int(flat) > 100 else f"No. {flat or addr.number}"]
        if addr.extra:
            parts.append(addr.extra)
        parts.append(street)
        line = ", ".join(parts)
    else:  # IE
        line = f"{addr.number} {street}"
        if flat:
            line = f"Apt {flat}, {line}"
    u = rng.random()
    if u < 0.05:
        line = line.upper()
    elif u < 0.09:
        line = line.lower()
    elif writer != "web" and rng.random() < 0.2:
        line = fold(line)
    return line


def render_postcode(rng: Random, addr: Address) -> str:
    pc = addr.postcode
    c = addr.country
    if c in ("GB", "IE"):
        u = rng.random()
        if u < 0.12:
            return pc.replace(" ", "")
        if u < 0.2:
            return pc.lower()
        if u < 0.23:
            return pc.lower().replace(" ", "")
    elif c == "US" and addr.extra and rng.random() < 0.2:
        return f"{pc}-{addr.extra}"
    elif c == "IN" and rng.random() < 0.15:
        return f"{pc[:3]} {pc[3:]}"
    return pc


def render_city(rng: Random, addr: Address) -> str:
    v = addr.city.variants
    return v[0] if rng.random() < 0.75 else rng.choice(v)


# ----------------------------------------------------------------------------------------------------------
# the simulation of activities

CHANNEL_STYLE = {  # how each producer writes occurred_at, and whether it writes empty or null fields
    "web": ("z_ms", "omit"), "app": ("local", "empty"), "email": ("utc", "omit"), "call_center": ("london", "null"),
    "store": ("store", "omit"), "chat": ("utc", "omit"), "social": ("z", "omit"), "loyalty": ("london", "omit"),
}
ID_KEYS = ("email", "phone", "loyalty_id", "device_id", "social_handle")
ATTR_KEYS = ("first_name", "last_name", "date_of_birth", "address", "postcode", "city")


class Simulator:
    def __init__(self, world: World):
        self.w = world
        self.r = world.rng
        self.event_ids: set = set()

    # -- emitting ------------------------------------------------------------------------------------------

    def event_id(self, channel: str) -> str:
        r = self.r
        make = {
            "web": lambda: uuid_like(r),
            "app": lambda: "app_" + hexid(r, 24),
            "email": lambda: f"esp-{hexid(r, 8)}-{hexid(r, 12)}",
            "call_center": lambda: "CC" + digits(r, 12, "123456789"),
            "store": lambda: "TX" + hexid(r, 18).upper(),
            "chat": lambda: "chat." + hexid(r, 20),
            "social": lambda: "soc" + digits(r, 17, "123456789"),
            "loyalty": lambda: "LYE-" + digits(r, 11, "123456789"),
        }[channel]
        for _ in range(100):
            eid = make()
            if eid not in self.event_ids:
                self.event_ids.add(eid)
                return eid
        raise RuntimeError("event id space exhausted")

    def emit(self, ms: int, person: Person, channel: str, etype: str, ids: dict, attrs: Optional[dict] = None,
             payload: Optional[dict] = None, zone: Optional[str] = None) -> Optional[dict]:
        if ms >= T1_MS or ms < T0_MS:
            return None
        style, empties = CHANNEL_STYLE[channel]
        if channel not in ("web",):
            ms -= ms % 1000
        if style == "london":
            when = render_time(ms, "Europe/London", "local")
        elif style == "store":
            when = render_time(ms, zone or "Europe/London", "local")
        elif style == "local":
            when = render_time(ms, zone or person.zone, "local")
        else:
            when = render_time(ms, "UTC", style)
        ids = {k: v for k, v in ids.items() if v is not None}
        attrs = {k: v for k, v in (attrs or {}).items() if v is not None}
        rec: dict = {"event_id": self.event_id(channel), "occurred_at": when, "channel": channel, "event_type": etype}
        if empties == "null":
            rec["identifiers"] = {k: ids.get(k) for k in ID_KEYS if k in ids or k in ("email", "phone", "loyalty_id")}
            rec["attributes"] = {k: attrs.get(k) for k in ATTR_KEYS if k in attrs or k in ("first_name", "last_name")}
        else:
            if ids or empties == "empty":
                rec["identifiers"] = ids
            if attrs or empties == "empty":
                rec["attributes"] = attrs
        if payload or empties == "empty":
            rec["payload"] = payload or {}
        if empties == "empty":
            rec["schema_version"] = 1
        if not ids and not attrs:
            raise AssertionError(f"an event with nothing to match on: {rec}")
        self.w.seq += 1
        self.w.events.append((ms, self.w.seq, person, rec))
        return rec

    # -- what a person writes about themselves ---------------------------------------------------------------

    def attrs(self, p: Person, ms: int, writer: str, fields: dict) -> dict:
        """Person attributes as one writer records them; ``fields`` maps attribute -> probability of being there."""
        r = self.r
        out: dict = {}
        lag = {"web": 0.2, "form": 0.35, "agent": 0.12, "staff": 0.3, "chat": 0.1}[writer]
        last = p.surname_at(ms, lag, r)
        if p.culture == "spanish" or (" " in last and p.household.members[0].culture == "spanish"):
            last = spanish_surname(r, last)
        if writer == "form":
            first = p.preferred if p.preferred and r.random() < 0.15 else p.first
        elif writer == "web":
            first = p.preferred if p.preferred and r.random() < 0.6 else p.first
        else:
            first = p.preferred if p.preferred and r.random() < 0.7 else p.first
        if writer == "agent":
            first, last = by_ear(r, first, 0.3), by_ear(r, last, 0.25)
        elif writer in ("staff", "chat"):
            first, last = by_ear(r, first, 0.05), by_ear(r, last, 0.05)
        elif r.random() < 0.1:
            first, last = fold(first), fold(last)
        if p.junior and r.random() < 0.35:
            suffix = r.choice(["Jr", "Jr.", "Junior", "jr"])
            if r.random() < 0.6:
                last = f"{last} {suffix}"
            else:
                first = f"{first} {suffix}"
        u = r.random()
        if writer in ("form", "staff") and u < 0.07:
            first, last = first.upper(), last.upper()
        elif writer in ("chat", "staff") and u < 0.25:
            first, last = first.lower(), last.lower()
        p_swap = {"agent": 0.04, "form": 0.025, "staff": 0.03, "web": 0.01, "chat": 0.0}[writer]
        if p.culture == "chinese":
            p_swap *= 5
        swap = r.random() < p_swap
        if swap:
            first, last = last, first
            self.w.trait("events_with_swapped_names")
        home = p.household.home_at(ms)[1]
        for f, prob in fields.items():
            if r.random() >= prob:
                continue
            if f == "first_name":
                out[f] = first
            elif f == "last_name":
                out[f] = last
            elif f == "date_of_birth":
                out[f] = write_dob(r, p.dob, writer if writer != "chat" else "web", p.country)
            elif f == "address":
                out[f] = render_address(r, home, writer)
            elif f == "postcode":
                out[f] = render_postcode(r, home)
            elif f == "city":
                out[f] = render_city(r, home)
        return out

    def email_for(self, p: Person, ms: int, writer: str, allow_mailbox: bool = True) -> Optional[str]:
        r = self.r
        e = p.email_at(ms)
        hh = p.household
        if allow_mailbox and p.uses_mailbox and hh.mailbox and (e is None or r.random() < 0.5):
            return email_typed(r, hh.mailbox, hh.mailbox, writer)
        if e is None:
            return None
        if p.work_email and writer == "self" and r.random() < 0.08:
            return p.work_email
        return email_typed(r, e[2], e[3], writer)

    def phone_for(self, p: Person, ms: int, prefer_landline: float = 0.0) -> Optional[Phone]:
        land = p.household.home_at(ms)[2]
        mob = p.mobile_at(ms)
        if land is not None and (mob is None or self.r.random() < prefer_landline):
            return land
        return mob

    def placeholder_email(self) -> str:
        self.w.trait("placeholder_values")
        return self.r.choice(PLACEHOLDER_EMAILS)

    def placeholder_phone(self) -> str:
        self.w.trait("placeholder_values")
        return self.r.choice(PLACEHOLDER_PHONES)

    # -- time --------------------------------------------------------------------------------------------

    def at(self, day: int, zone: str, hours: str) -> int:
        r = self.r
        hour = r.choices(range(24), cum_weights=_HOUR_CUM[hours])[0]
        local = T0 + day * 86400 + hour * 3600 + r.randrange(3600)
        off = utc_offset(zone, local - ZONES[zone][0] * 60)
        return (local - off * 60) * 1000 + r.randrange(1000)

    # -- channels ------------------------------------------------------------------------------------------

    def pick_web_device(self, p: Person, ms: int) -> Optional[Device]:
        r = self.r
        own = [d for d in p.devices if d.channel == "web" and d.start <= ms < d.end]
        shared = [d for d in p.household.devices if d.channel == "web"]
        pool = [(d, 3 if d.kind == "laptop" else 2) for d in own] + [(d, 3 if p.teen else 1.5) for d in shared]
        if not pool:
            return None
        return wchoice(r, pool)

    def pick_app_device(self, p: Person, ms: int) -> Optional[Device]:
        own = [d for d in p.devices if d.channel == "app"]
        shared = [d for d in p.household.devices if d.channel == "app"]
        pool = [(d, 4) for d in own] + [(d, 2.5 if p.teen else 1) for d in shared]
        if not pool:
            return None
        return wchoice(self.r, pool)

    def account_email(self, p: Person, ms: int) -> Optional[str]:
        return self.email_for(p, ms, "self")

    def web_session(self, p: Person, ms: int, dev: Optional[Device] = None, store: Optional[Store] = None) -> int:
        r = self.r
        dev = dev or self.pick_web_device(p, ms)
        if dev is None:
            return 0
        n = 0
        did = dev.did
        known = p.identified.get(did, False)
        can_login = not dev.never_login and (p.email_at(ms) or (p.uses_mailbox and p.household.mailbox))
        views = 1 + min(int(r.expovariate(0.45)), 12)
        t = ms
        login_at = None
        if dev.kind == "kiosk":
            login_at = r.randrange(views + 1) if (can_login and r.random() < 0.5) else None
        elif known:
            login_at = r.randrange(views + 1) if r.random() < 0.35 else None
        elif can_login and r.random() < (0.55 if dev.kind != "phone_browser" else 0.3):
            login_at = r.randrange(1, views + 1)
        email = None
        for i in range(views + 1):
            if login_at == i and can_login:
                email = self.account_email(p, t)
                if email:
                    if not p.signed_up and p.new_customer:
                        p.signed_up = True
                        attrs = self.attrs(p, t, "web", {"first_name": 0.95, "last_name": 0.95,
                                                         "date_of_birth": 0.6, "postcode": 0.6})
                        ids = {"device_id": did, "email": email}
                        mob = p.mobile_at(t)
                        if mob is not None and r.random() < 0.4:
                            ids["phone"] = write_phone(r, mob, "self")
                        n += bool(self.emit(t, p, "web", "signup", ids, attrs))
                    else:
                        p.signed_up = True
                        n += bool(self.emit(t, p, "web", "login", {"device_id": did, "email": email}))
                    p.identified[did] = True
                    t += r.randint(2, 40) * 1000
            if i < views:
                page = r.choice(PAGES).format(n=r.randint(10000, 99999))
                n += bool(self.emit(t, p, "web", "page_view", {"device_id": did}, payload={"url": page}))
                t += r.randint(5, 240) * 1000 + r.randrange(1000)
        logged_in = email or (p.identified.get(did) and dev.kind != "kiosk")  # a kiosk forgets you
        if logged_in and r.random() < (0.45 if store else 0.22):
            email = email or self.account_email(p, t)
            if email:
                n += self.purchase(p, t, "web", did, email, store)
        return n

    def purchase(self, p: Person, ms: int, channel: str, did: str, email: str, store: Optional[Store] = None) -> int:
        r = self.r
        cur = CURRENCY[store.country if store else p.household.home_at(ms)[1].country]
        amount = round(r.lognormvariate(math.log(42), 0.7) * PRICE_FACTOR[cur], 2 if cur != "INR" else 0)
        self.w.order_no += 1
        order = f"{'W' if channel == 'web' else 'A'}{self.w.order_no * 7919 % 10_000_000:07d}"
        payload = {"order_id": order, "amount": amount, "currency": cur, "items": r.randint(1, 5)}
        if store:
            payload["fulfilment"] = f"click_and_collect:{store.code}"
        ids = {"device_id": did, "email": email}
        if store:  # collected in the shop: the name on the order only
            attrs = self.attrs(p, ms, "web", {"first_name": 0.9, "last_name": 0.95})
        elif r.random() < 0.04:
            # a present sent straight to someone else: their name and address on the buyer's order
            other = r.choice(self.w.persons)
            attrs = self.attrs(other, ms, "web", {"first_name": 1.0, "last_name": 1.0, "address": 1.0,
                                                  "postcode": 1.0, "city": 0.8}) if other.household is not p.household                 else None
            payload["gift"] = True
            self.w.trait("gift_orders_to_other_people")
        else:  # home delivery
            attrs = self.attrs(p, ms, "web", {"first_name": 0.95, "last_name": 0.97, "address": 0.92,
                                              "postcode": 0.95, "city": 0.8})
        n = bool(self.emit(ms, p, channel, "purchase", ids, attrs, payload=payload))
        if r.random() < 0.07:
            later = ms + r.randint(3, 25) * DAY_MS + r.randrange(DAY_MS)
            refund = {"order_id": order, "amount": round(amount * r.choice([1, 1, 0.5]), 2), "currency": cur}
            rid = {"email": self.email_for(p, later, "self") or email}
            n += bool(self.emit(later, p, channel if channel != "app" else "web", "refund", rid, payload=refund))
        return n

    def app_session(self, p: Person, ms: int) -> int:
        r = self.r
        dev = self.pick_app_device(p, ms)
        if dev is None:
            return self.web_session(p, ms)
        did = dev.did
        n = 0
        t = ms
        first_time = not p.identified.get(did)
        holder = dev.holder
        may_login = dev.kind != "tv" or holder is p
        if may_login and (first_time or r.random() < 0.2):
            email = self.account_email(p, t)
            mob = p.mobile_at(t)
            ids = {"device_id": did}
            if email and (mob is None or r.random() < 0.75):
                ids["email"] = email
            elif mob is not None:
                ids["phone"] = mob.e164()
            if len(ids) > 1:
                etype = "signup" if (p.new_customer and not p.signed_up) else "login"
                attrs = self.attrs(p, t, "web", {"first_name": 0.9, "last_name": 0.9, "date_of_birth": 0.4}) \
                    if etype == "signup" else None
                p.signed_up = True
                n += bool(self.emit(t, p, "app", etype, ids, attrs, zone=p.zone))
                p.identified[did] = True
                t += r.randint(1, 20) * 1000
        for _ in range(1 + min(int(r.expovariate(0.5)), 8)):
            screen = r.choice(["home", "search", "product", "basket", "offers", "orders", "loyalty_card", "watch"])
            n += bool(self.emit(t, p, "app", "page_view", {"device_id": did}, payload={"screen": screen}, zone=p.zone))
            t += r.randint(5, 200) * 1000
        if dev.kind != "tv" and p.identified.get(did) and r.random() < 0.15:
            email = self.account_email(p, t)
            if email:
                n += self.purchase(p, t, "app", did, email)
        card = p.card_at(t)
        if card and dev.kind == "app" and r.random() < 0.1:
            n += bool(self.emit(t + 5000, p, "loyalty", "points_redeemed",
                                {"loyalty_id": loyalty_spelling(r, card, "system"), "device_id": did},
                                payload={"points": r.choice([250, 500, 500, 1000, 1500]), "via": "app"}))
        return n

    def email_activity(self, p: Person, ms: int) -> int:
        r = self.r
        hh = p.household
        e = p.email_at(ms)
        if p.uses_mailbox and hh.mailbox and (e is None or r.random() < 0.45):
            sub = hh.mailbox
        elif e is not None:
            sub = e[3] if r.random() < 0.7 else e[2]
        else:
            return 0
        campaign = f"{r.choice(['spring', 'summer', 'autumn', 'winter', 'flash', 'vip', 'newsletter'])}-" \
                   f"{'2023' if ms < T0_MS + 365 * DAY_MS else '2024'}-{r.randint(1, 12):02d}"
        n = bool(self.emit(ms, p, "email", "email_open", {"email": sub}, payload={"campaign": campaign}))
        if r.random() < 0.35:
            t = ms + r.randint(5, 600) * 1000
            ids = {"email": sub}
            dev = self.pick_web_device(p, t) if r.random() < 0.6 else None
            if dev is not None:
                ids["device_id"] = dev.did
            n += bool(self.emit(t, p, "email", "email_click", ids,
                                payload={"campaign": campaign, "url": r.choice(PAGES).format(n=r.randint(1, 99999))}))
            if dev is not None and r.random() < 0.5:
                n += self.web_session(p, t + 3000, dev)
        return n

    def call(self, p: Person, ms: int, topic: Optional[str] = None, fields: Optional[dict] = None) -> int:
        r = self.r
        w = self.w
        w.case_no += 1
        case_id = f"CS-{(w.case_no * 104729) % 10_000_000:07d}"
        ids: dict = {}
        ph = self.phone_for(p, ms, prefer_landline=0.35 if 2023 - p.dob.year > 50 else 0.2)
        u = r.random()
        if ph is not None and u < 0.5:
            ids["phone"] = ph.e164()  # caller ID from the telephony system
        elif ph is not None and u < 0.88:
            ids["phone"] = write_phone(r, ph, "agent")
        elif u < 0.95:
            ids["phone"] = self.placeholder_phone()
        u = r.random()
        if u < 0.45:
            ids["email"] = self.email_for(p, ms, "agent") or self.placeholder_email()
        elif u < 0.52:
            ids["email"] = self.placeholder_email()
        card = p.card_at(ms)
        if card and r.random() < 0.25:
            ids["loyalty_id"] = loyalty_spelling(r, card, "agent")
        attrs = self.attrs(p, ms, "agent", fields or {"first_name": 0.9, "last_name": 0.85, "date_of_birth": 0.45,
                                                      "postcode": 0.45, "address": 0.15})
        if not any(v for v in ids.values()) and not attrs:
            attrs = {"first_name": p.preferred or p.first}
        topic = topic or r.choice(CASE_TOPICS)
        n = bool(self.emit(ms, p, "call_center", "case_opened", ids, attrs,
                           payload={"case_id": case_id, "topic": topic, "direction": "inbound"}))
        if r.random() < 0.78:
            day = (ms - T0_MS) // DAY_MS + int(r.expovariate(1 / 2.5))
            later = max(ms + r.randint(120, 3600) * 1000, self.at(day, "Europe/London", "call"))
            res_ids: dict = {}
            if "phone" in ids and r.random() < 0.7:
                res_ids["phone"] = ids["phone"]
            if "email" in ids and (not res_ids or r.random() < 0.5):
                res_ids["email"] = ids["email"]
            res_attrs = {}
            if not res_ids:
                res_attrs = {k: attrs[k] for k in ("first_name", "last_name") if k in attrs}
                if not res_attrs:
                    res_ids["phone"] = ids.get("phone") or self.placeholder_phone()
            payload = {"case_id": case_id, "resolution": r.choice(["resolved", "refund issued", "replacement sent",
                                                                   "information given"])}
            if r.random() < 0.55:
                payload["csat"] = wchoice(r, [(1, 8), (2, 7), (3, 15), (4, 30), (5, 40)])
            n += bool(self.emit(later, p, "call_center", "case_resolved", res_ids, res_attrs, payload))
        return n

    def store_visit(self, p: Person, day: int) -> int:
        r = self.r
        home = p.household.home_at(T0_MS + day * DAY_MS)[1]
        usual = p.home_store
        if usual.city != home.city.name and (usual.country != home.country or r.random() < 0.8):
            # moved away: the shop near the new home (the old one is remembered for the rest of the run)
            local = [s for s in self.w.stores if s.city == home.city.name] or \
                [s for s in self.w.stores if s.country == home.country] or [usual]
            usual = p.home_store = r.choice(local)
        if r.random() < 0.88:
            store = usual
        else:  # another shop: mostly in the same country, now and then abroad on a trip
            same = [s for s in self.w.stores if s.country == usual.country]
            store = r.choice(same if r.random() < 0.8 else self.w.stores)
        ms = self.at(day, store.zone, "store")
        n = 0
        if r.random() < 0.08 and store.kiosks:
            kiosk = r.choice(store.kiosks)
            if p not in kiosk.users:
                kiosk.users.append(p)
            n += self.web_session(p, ms - r.randint(60, 900) * 1000, kiosk, store)
        pos = r.choice(store.pos)
        if p not in pos.users:
            pos.users.append(p)
        ids: dict = {"device_id": pos.did}
        card = p.card_at(ms)
        partner_card = p.partner.card_at(ms) if p.partner is not None and p.partner.household is p.household else None
        if card and r.random() < 0.7:
            ids["loyalty_id"] = loyalty_spelling(r, card, "scan" if r.random() < 0.85 else "agent")
        elif not card and partner_card and r.random() < 0.5:
            ids["loyalty_id"] = loyalty_spelling(r, partner_card, "scan")
            self.w.trait("purchases_on_partner_card")
        elif not card and r.random() < 0.05:
            ids["loyalty_id"] = loyalty_spelling(r, store.house_card, "scan")
            self.w.trait("purchases_on_shop_card")
        u = r.random()
        if u < 0.1:
            ph = p.mobile_at(ms)
            ids["phone"] = write_phone(r, ph, "staff", store.country) if ph else self.placeholder_phone()
        elif u < 0.2:
            ids["email"] = self.email_for(p, ms, "self") or self.placeholder_email()
        elif u < 0.23:
            ids["email"] = self.placeholder_email()
        attrs = None
        if r.random() < 0.08:  # home delivery or an order: staff take name and postcode
            attrs = self.attrs(p, ms, "staff", {"first_name": 0.8, "last_name": 0.95, "postcode": 0.9,
                                                "address": 0.5, "date_of_birth": 0.05})
        cur = CURRENCY[store.country]
        amount = round(r.lognormvariate(math.log(28), 0.8) * PRICE_FACTOR[cur], 2 if cur != "INR" else 0)
        payload = {"store": store.code, "amount": amount, "currency": cur,
                   "payment": wchoice(r, [("card", 70), ("contactless", 20), ("cash", 10)])}
        if r.random() < 0.02 and attrs:
            # a back-office order keyed without the till: name and address only
            ids = {}
            self.w.trait("attribute_only_events")
        n += bool(self.emit(ms, p, "store", "store_purchase", ids, attrs, payload, zone=store.zone))
        if r.random() < 0.04:
            later = ms + r.randint(1, 20) * DAY_MS
            rid = {"device_id": r.choice(store.pos).did}
            if "loyalty_id" in ids:
                rid["loyalty_id"] = loyalty_spelling(r, card or partner_card or store.house_card, "scan")
            n += bool(self.emit(later, p, "store", "refund", rid, None,
                                {"store": store.code, "amount": amount, "currency": cur}, zone=store.zone))
        return n

    def chat(self, p: Person, ms: int) -> int:
        r = self.r
        dev = self.pick_web_device(p, ms) if r.random() < 0.7 else self.pick_app_device(p, ms)
        conv = "conv-" + hexid(r, 10)
        email = self.email_for(p, ms, "self") if r.random() < 0.7 else None
        first_ids = {"device_id": dev.did if dev else None, "email": email}
        attrs = self.attrs(p, ms, "chat", {"first_name": 0.85})
        if not any(first_ids.values()) and not attrs:
            attrs = {"first_name": p.preferred or p.first}
        n = bool(self.emit(ms, p, "chat", "chat_message", first_ids, attrs, {"conversation_id": conv, "seq": 1}))
        t = ms
        for i in range(r.randint(0, 4)):
            t += r.randint(20, 300) * 1000
            ids = {"device_id": dev.did} if dev else {"email": email}
            later_attrs = None if any(ids.values()) else {"first_name": attrs.get("first_name") or p.first}
            n += bool(self.emit(t, p, "chat", "chat_message", ids, later_attrs,
                                {"conversation_id": conv, "seq": i + 2}))
        if r.random() < 0.2 and email:
            self.w.case_no += 1
            case_id = f"CS-{(self.w.case_no * 104729) % 10_000_000:07d}"
            n += bool(self.emit(t + 1000, p, "chat", "case_opened", {"email": email},
                                payload={"case_id": case_id, "topic": r.choice(CASE_TOPICS)}))
            if r.random() < 0.8:
                pay = {"case_id": case_id}
                if r.random() < 0.6:
                    pay["csat"] = wchoice(r, [(1, 6), (2, 6), (3, 15), (4, 33), (5, 40)])
                n += bool(self.emit(t + r.randint(1, 72) * 3_600_000, p, "chat", "case_resolved", {"email": email},
                                    payload=pay))
        return n

    def social(self, p: Person, ms: int) -> int:
        r = self.r
        h = p.handle
        shown = h if r.random() < 0.75 else h.lstrip("@") if r.random() < 0.6 else h.lower()
        platform = r.choice(["instagram", "x", "tiktok", "facebook"])
        n = bool(self.emit(ms, p, "social", "social_mention", {"social_handle": shown},
                           payload={"platform": platform, "post_id": digits(r, 15, "123456789"),
                                    "sentiment": wchoice(r, [("positive", 50), ("neutral", 30), ("negative", 20)])}))
        if r.random() < 0.12:
            self.w.case_no += 1
            case_id = f"CS-{(self.w.case_no * 104729) % 10_000_000:07d}"
            ids = {"social_handle": h, "email": self.email_for(p, ms, "self") if r.random() < 0.6 else None}
            t = ms + r.randint(600, 7200) * 1000
            n += bool(self.emit(t, p, "social", "case_opened", ids, payload={"case_id": case_id, "platform": platform}))
            if r.random() < 0.7:
                n += bool(self.emit(t + r.randint(1, 48) * 3_600_000, p, "social", "case_resolved",
                                    {"social_handle": h}, payload={"case_id": case_id}))
        return n

    def loyalty_enrol(self, p: Person, ms: int, num: str) -> int:
        r = self.r
        ids = {"loyalty_id": loyalty_spelling(r, num, "system")}
        email = self.email_for(p, ms, "self")
        if email is None and r.random() < 0.3:
            email = "n/a"
            self.w.trait("placeholder_values")
        ids["email"] = email
        ph = self.phone_for(p, ms, prefer_landline=0.3)
        if ph is not None and r.random() < 0.8:
            ids["phone"] = write_phone(r, ph, "self")
        attrs = self.attrs(p, ms, "form", {"first_name": 0.98, "last_name": 0.98, "date_of_birth": 0.85,
                                           "address": 0.85, "postcode": 0.92, "city": 0.8})
        return bool(self.emit(ms, p, "loyalty", "loyalty_enrol", ids, attrs,
                              {"tier": "green", "source": r.choice(["store", "web", "app"])}))

    def points(self, p: Person, ms: int) -> int:
        r = self.r
        card = p.card_at(ms)
        if not card:
            return 0
        ids = {"loyalty_id": loyalty_spelling(r, card, r.choice(["system", "system", "self"]))}
        if r.random() < 0.3:
            ids["email"] = self.email_for(p, ms, "self")
        return bool(self.emit(ms, p, "loyalty", "points_redeemed", ids,
                              payload={"points": r.choice([250, 500, 500, 1000, 1500, 2000])}))

    def profile_updates(self, p: Person) -> int:
        """What life events leave behind: updated profiles after a move, a new name, a new e-mail."""
        r = self.r
        n = 0
        home_changes = [h[0] for h in p.household.homes[1:]]
        for t in home_changes:
            if not (p.active[0] <= t < p.active[1]) or p.teen:
                continue
            if r.random() < 0.3:
                n += self.call(p, self.at((t - T0_MS) // DAY_MS + r.randint(3, 60), "Europe/London", "call"),
                               "change of address", {"first_name": 0.9, "last_name": 0.95, "address": 0.95,
                                                     "postcode": 0.95, "city": 0.5, "date_of_birth": 0.5})
            if r.random() < 0.5:
                t2 = t + r.randint(1, 40) * DAY_MS + r.randrange(DAY_MS)
                email = self.email_for(p, t2, "self")
                if email:
                    attrs = self.attrs(p, t2, "web", {"address": 1.0, "postcode": 1.0, "city": 0.9})
                    dev = self.pick_web_device(p, t2)
                    ids = {"email": email, "device_id": dev.did if dev else None}
                    land = p.household.home_at(t2)[2]
                    if land is not None and r.random() < 0.5:
                        ids["phone"] = write_phone(r, land, "self")
                    n += bool(self.emit(t2, p, "web", "profile_update", ids, attrs, {"changed": "address"}))
        for t, _ in p.surnames[1:]:
            if not (p.active[0] <= t < p.active[1]):
                continue
            if r.random() < 0.35:
                n += self.call(p, self.at((t - T0_MS) // DAY_MS + r.randint(7, 90), "Europe/London", "call"),
                               "change of name", {"first_name": 0.95, "last_name": 1.0, "date_of_birth": 0.6,
                                                  "postcode": 0.6})
            card = p.card_at(t)
            if card and r.random() < 0.4:
                t2 = t + r.randint(10, 120) * DAY_MS
                attrs = self.attrs(p, t2, "form", {"first_name": 1.0, "last_name": 1.0, "date_of_birth": 0.5})
                attrs["last_name"] = p.surname_at(t2)
                n += bool(self.emit(t2, p, "loyalty", "profile_update", {"loyalty_id": loyalty_spelling(r, card, "system")},
                                    attrs, {"changed": "name"}))
            if r.random() < 0.4:
                t2 = t + r.randint(5, 90) * DAY_MS
                email = self.email_for(p, t2, "self", allow_mailbox=False)
                if email:
                    attrs = self.attrs(p, t2, "web", {"first_name": 1.0, "last_name": 1.0})
                    attrs["last_name"] = p.surname_at(t2)
                    n += bool(self.emit(t2, p, "web", "profile_update", {"email": email}, attrs,
                                        {"changed": "name"}))
        for e in p.emails[1:]:
            if r.random() < 0.45 and p.active[0] <= e[0] < p.active[1]:
                t2 = e[0] + r.randint(0, 10) * DAY_MS + r.randrange(DAY_MS)
                dev = self.pick_web_device(p, t2) or self.pick_app_device(p, t2)
                ids = {"email": e[3], "device_id": dev.did if dev else None}
                n += bool(self.emit(t2, p, "web" if dev is None or dev.channel == "web" else "app", "profile_update",
                                    ids, None, {"changed": "email"}, zone=p.zone))
        return n

    def birthday(self, p: Person, d0: int, d1: int) -> int:
        """Members add their birthday for a birthday voucher; app users complete their account details."""
        r = self.r
        n = 0
        card = next((c for c in p.cards if c[1] > T0_MS), None)
        if card and r.random() < 0.4:
            ms = self.at(r.randint(d0, d1), p.zone, "online")
            num = p.card_at(ms) or card[2]
            attrs = self.attrs(p, ms, "web", {"first_name": 0.8, "date_of_birth": 1.0})
            n += bool(self.emit(ms, p, "loyalty", "profile_update", {"loyalty_id": loyalty_spelling(r, num, "system")},
                                attrs, {"changed": "birthday"}))
        app = next((d for d in p.devices if d.channel == "app"), None)
        if app and r.random() < 0.15:
            ms = self.at(r.randint(d0, d1), p.zone, "online")
            email = self.account_email(p, ms)
            attrs = self.attrs(p, ms, "web", {"first_name": 0.9, "last_name": 0.9, "date_of_birth": 0.8,
                                              "postcode": 0.6})
            if attrs or email:
                n += bool(self.emit(ms, p, "app", "profile_update", {"device_id": app.did, "email": email}, attrs,
                                    {"changed": "details"}, zone=p.zone))
        return n

    # -- a person's two years --------------------------------------------------------------------------------

    PERSONAS = {
        "digital": {"web": 30, "app": 22, "email": 22, "chat": 6, "social": 7, "store": 7, "call_center": 4,
                    "loyalty": 2},
        "shopper": {"store": 36, "loyalty": 8, "email": 20, "web": 14, "app": 6, "call_center": 6, "chat": 4,
                    "social": 3},
        "mixed": {"web": 22, "app": 10, "email": 22, "store": 20, "call_center": 9, "chat": 6, "social": 4,
                  "loyalty": 6},
        "phone": {"call_center": 32, "store": 30, "email": 14, "web": 12, "loyalty": 8, "chat": 2, "social": 2},
    }
    PER_ACTIVITY = {"web": 3.6, "app": 3.0, "email": 1.6, "call_center": 1.8, "store": 1.2, "chat": 2.8,
                    "social": 1.2, "loyalty": 1.0}

    def person(self, p: Person) -> int:
        r = self.r
        weights = {}
        for ch, wgt in self.PERSONAS[p.persona].items():
            wgt *= r.uniform(0.4, 1.6)
            if ch == "email" and not p.emails and not p.uses_mailbox:
                wgt = 0
            if ch == "social" and not p.handle:
                wgt = 0
            if ch == "loyalty" and not p.cards:
                wgt = 0
            if ch == "app" and not any(d.channel == "app" for d in p.devices + p.household.devices):
                wgt = 0
            if ch == "chat" and not p.emails and not p.devices:
                wgt = 0
            weights[ch] = wgt
        chans = [c for c in weights if weights[c] > 0]
        ws = [weights[c] for c in chans]
        per = sum(self.PER_ACTIVITY[c] * w for c, w in zip(chans, ws)) / sum(ws)
        d0, d1 = (p.active[0] - T0_MS) // DAY_MS, (p.active[1] - T0_MS) // DAY_MS - 1
        d1 = max(d0, min(d1, DAYS - 1))
        n = 0
        acts: list = []
        if p.target <= 2:
            acts.append((r.randint(d0, d1), r.choices(chans, weights=ws)[0]))
        else:
            k = max(1, round(p.target / per))
            # activity comes in spells: some people are busy in a few months only
            centres = [r.randint(d0, d1) for _ in range(r.randint(1, 4))]
            for _ in range(k):
                if r.random() < 0.5:
                    day = min(d1, max(d0, int(r.gauss(r.choice(centres), 25))))
                else:
                    day = r.randint(d0, d1)
                acts.append((day, r.choices(chans, weights=ws)[0]))
        for c in p.cards:
            if c[3] and T0_MS <= c[0] < T1_MS:
                acts.append(((c[0] - T0_MS) // DAY_MS, "enrol"))
        if p.card_replaced_at is not None:
            acts.append(((p.card_replaced_at - T0_MS) // DAY_MS, "replace"))
        acts.sort(key=lambda a: a[0])
        budget = p.target if p.target <= 2 else 10 ** 6
        for day, ch in acts:
            before = len(self.w.events)
            if ch == "web":
                self.web_session(p, self.at(day, p.zone, "online"))
            elif ch == "app":
                self.app_session(p, self.at(day, p.zone, "online"))
            elif ch == "email":
                self.email_activity(p, self.at(day, p.zone, "email"))
            elif ch == "call_center":
                self.call(p, self.at(day, "Europe/London", "call"))
            elif ch == "store":
                self.store_visit(p, day)
            elif ch == "chat":
                self.chat(p, self.at(day, p.zone, "online"))
            elif ch == "social":
                self.social(p, self.at(day, p.zone, "online"))
            elif ch == "loyalty":
                self.points(p, self.at(day, p.zone, "online"))
            elif ch == "enrol":
                c = next(c for c in p.cards if c[3])
                self.loyalty_enrol(p, max(c[0], self.at(day, "Europe/London", "store")), c[2])
            elif ch == "replace":
                t = p.card_replaced_at
                num = p.card_at(t)
                ids = {"loyalty_id": loyalty_spelling(r, num, "system"), "email": self.email_for(p, t, "self")}
                if not ids["email"]:
                    mob = p.mobile_at(t)
                    ids["phone"] = write_phone(r, mob, "agent") if mob else None
                    if not ids["phone"]:
                        ids["device_id"] = r.choice(p.home_store.pos).did
                self.emit(t, p, "loyalty", "card_replaced", ids, payload={"reason": r.choice(["lost", "damaged"])})
            made = len(self.w.events) - before
            n += made
            if made and budget <= 2:
                # a one-off customer: keep only the first event or two they left
                keep = budget
                del self.w.events[before + keep:]
                n = len(self.w.events) - before
                break
        if p.target > 2:
            n += self.profile_updates(p)
            n += self.birthday(p, d0, d1)
        tries = 0
        while n == 0 and tries < 20:  # everyone in the data did something at least once
            tries += 1
            n += self.store_visit(p, r.randint(d0, d1))
        return n

    def run(self):
        for p in self.w.persons:
            self.person(p)


# ----------------------------------------------------------------------------------------------------------
# output

BAD_DATES = ["2024-02-30T10:15:00Z", "31/12/2023 18:22", "not a date", "", "2023-13-05T09:00:00+00:00",
             "2024-06-31T12:00:00+01:00", "yesterday", "2023-11-05 25:61:00", "NaN"]


def corrupt(rng: Random, rec: dict, line: str, new_id: str) -> tuple[str, str]:
    """A malformed line made from a real record (with a fresh id): what broken exports look like."""
    kind = wchoice(rng, [("truncated", 28), ("bad_date", 22), ("missing_occurred_at", 15), ("nothing", 10),
                         ("bad_channel", 8), ("garbage", 7), ("missing_event_type", 5), ("date_number", 5)])
    bad = dict(rec)
    bad["event_id"] = new_id
    if kind == "truncated":
        text = json.dumps(bad, ensure_ascii=False)
        return text[: rng.randint(12, max(13, len(text) - 3))], kind
    if kind == "bad_date":
        bad["occurred_at"] = rng.choice(BAD_DATES)
    elif kind == "date_number":
        bad["occurred_at"] = rng.choice([1700000000, 1.7e12, None])
    elif kind == "missing_occurred_at":
        del bad["occurred_at"]
    elif kind == "missing_event_type":
        del bad["event_type"]
    elif kind == "nothing":
        bad["identifiers"] = {"device_id": ""} if rng.random() < 0.5 else {}
        bad["attributes"] = {}
    elif kind == "bad_channel":
        bad["channel"] = rng.choice(["Call Centre", "WEB", "in-store", "E-mail"])
    else:
        return rng.choice(["event_id,occurred_at,channel,event_type", "<html><body>502 Bad Gateway</body></html>",
                           "null", json.dumps([bad], ensure_ascii=False), "\x00\x00\x00", "}{"]), kind
    return json.dumps(bad, ensure_ascii=False), kind


def write_corpus(events_path, truth_path, people: int = 2000, seed: int = 1) -> dict:
    """Writes the event stream (JSON lines) and the truth CSV; returns statistics of what was written."""
    if people < 1:
        raise ValueError("people must be at least 1")
    world = World(people, seed)
    world.build()
    sim = Simulator(world)
    sim.run()
    r = world.rng
    events = sorted(world.events, key=lambda e: (e[0], e[1]))
    lines: list[str] = []
    truth: list[tuple[str, str, str]] = []
    malformed = duplicates = 0
    bad_kinds: dict[str, int] = {}
    by_channel: dict[str, int] = {}
    by_type: dict[str, int] = {}
    per_person: dict[str, int] = {}
    for _, _, person, rec in events:
        line = json.dumps(rec, ensure_ascii=False)
        lines.append(line)
        truth.append((rec["event_id"], person.pid, person.hh_id))
        by_channel[rec["channel"]] = by_channel.get(rec["channel"], 0) + 1
        by_type[rec["event_type"]] = by_type.get(rec["event_type"], 0) + 1
        per_person[person.pid] = per_person.get(person.pid, 0) + 1
        if r.random() < 0.015:  # re-sent by the producer
            lines.append(line)
            duplicates += 1
        if r.random() < 0.006:
            text, kind = corrupt(r, rec, line, sim.event_id(rec["channel"]))
            lines.append(text)
            malformed += 1
            bad_kinds[kind] = bad_kinds.get(kind, 0) + 1
    Path(events_path).write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    with open(truth_path, "w", encoding="utf-8", newline="") as fh:
        out = csv.writer(fh, lineterminator="\n")
        out.writerow(["event_id", "person_id", "household_id"])
        out.writerows(truth)
    counts = sorted(per_person.get(p.pid, 0) for p in world.persons)
    multi = [h for h in world.households if h.kind != "single"]
    shared_devices = sum(1 for h in world.households for _ in h.devices)
    stats = {
        "people": len(world.persons),
        "households": len(multi),
        "people_in_households": sum(len(h.members) for h in multi),
        "people_living_alone": sum(1 for h in world.households if h.kind == "single"),
        "events": len(truth),
        "lines": len(lines),
        "malformed": malformed,
        "duplicates": duplicates,
        "people_without_events": sum(1 for c in counts if c == 0),
        "events_per_person": {"median": counts[len(counts) // 2], "max": counts[-1],
                              "1-2": sum(1 for c in counts if 1 <= c <= 2),
                              "5-30": sum(1 for c in counts if 5 <= c <= 30),
                              "over_30": sum(1 for c in counts if c > 30)},
        "channels": dict(sorted(by_channel.items())),
        "event_types": dict(sorted(by_type.items())),
        "malformed_kinds": dict(sorted(bad_kinds.items())),
        "countries": dict(sorted(_count(p.country for p in world.persons).items())),
        "household_kinds": dict(sorted(_count(h.kind for h in world.households).items())),
        "shared_household_devices": shared_devices,
        # how often the simulation drew each trait (some draws leave no visible trace in the events)
        "world_traits": dict(sorted(world.stats_traits.items())),
        "seed": seed,
    }
    return stats


def _count(items) -> dict:
    out: dict = {}
    for x in items:
        out[x] = out.get(x, 0) + 1
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="events file (JSON lines)")
    ap.add_argument("--truth", required=True, help="truth CSV: event_id,person_id,household_id")
    args = ap.parse_args(argv)
    stats = write_corpus(args.out, args.truth, people=args.people, seed=args.seed)
    json.dump(stats, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
