# The idres image: every role of the stream jobs and the API run from it (`idres worker`, `idres serve`).
# A build stage with a C compiler builds the wheel (with the compiled field comparison, see setup.py); the
# image itself carries no compiler.
FROM python:3.11-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md LICENSE ./
COPY schemas ./schemas
COPY resolver ./resolver
COPY projections ./projections
COPY streams ./streams
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim
WORKDIR /app
COPY constraints.txt ./
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir -c constraints.txt /wheels/*.whl && rm -rf /wheels
ENTRYPOINT ["idres"]
