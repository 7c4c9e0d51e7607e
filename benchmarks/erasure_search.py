"""What an erasure's search of the rejected records costs (``streams.embedded.erased_contents``): the records
that name the erased customer in any form are found by reading each record's words as the erased identifiers'
types, once the record holds an erased value's letters and digits.

    python benchmarks/erasure_search.py [--records 20000] [--naming 100]

Builds views holding ``--records`` rejected records (JSON cut short, each naming a customer of its own by email,
card and address), of which ``--naming`` name the erased customer in another form (dots, a tag, the domain's
alias, an escape), and times the search for an erasure of that customer's email, card and phone. Printed: the
seconds, records per second, and how many records it found (all of ``--naming``, and no other).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from projections.customer import CustomerViews  # noqa: E402
from resolver.config import ResolverConfig  # noqa: E402
from resolver.normalize import Normalizer  # noqa: E402
from streams.embedded import erased_contents  # noqa: E402

FORMS = ("Zora.Quenby@gmail.com", "zora.quenby+news@googlemail.com", "ZORAQUENBY@GMAIL.COM",
         "zora.quenby\\u0040gmail.com")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--naming", type=int, default=100)
    args = ap.parse_args()
    views = CustomerViews()
    spread = range(0, args.records, max(args.records // max(args.naming, 1), 1))[:args.naming]
    naming = {i: FORMS[rank % len(FORMS)] for rank, i in enumerate(spread)}  # (each form in turn)
    for i in range(args.records):
        email = naming.get(i, f"person{i}@mailbox.org")
        raw = json.dumps({"event_id": f"bad-{i}", "identifiers": {"email": "EMAIL", "loyalty_id": f"LY-{i:08d}"},
                          "attributes": {"first_name": "Ann", "address": f"{i} High Street"}})[:-3]
        views.rejected.append({"key": f"k{i}", "raw": raw.replace("EMAIL", email)})
    nodes = ["email:zoraquenby@gmail.com", "loyalty_id:55551234", "phone:+447700900461"]
    started = time.perf_counter()
    _, rejected, _ = erased_contents(views, Normalizer(ResolverConfig()), [], nodes)
    seconds = time.perf_counter() - started
    found = {int(k[1:]) for k in rejected}
    print(f"{args.records:,} rejected records searched in {seconds:.2f} s ({args.records / seconds:,.0f}/s): "
          f"{len(found & set(naming))} of the {len(naming)} naming the customer found, {len(found - set(naming))} "
          f"others")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
