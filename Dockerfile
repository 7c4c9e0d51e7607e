# The idres image: every role of the stream jobs and the API run from it (`idres worker`, `idres serve`).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY resolver ./resolver
COPY projections ./projections
COPY streams ./streams
RUN pip install --no-cache-dir .
ENTRYPOINT ["idres"]
