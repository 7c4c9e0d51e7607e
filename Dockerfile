# The idres image: every role of the stream jobs and the API run from it (`idres worker`, `idres serve`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY schemas ./schemas
COPY resolver ./resolver
COPY projections ./projections
COPY streams ./streams
RUN pip install --no-cache-dir -c constraints.txt .
ENTRYPOINT ["idres"]
