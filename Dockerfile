FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY contracts contracts
COPY runtime runtime
COPY lifecycle lifecycle
COPY api api
COPY store store
COPY bus bus
COPY gateway gateway
COPY worker worker
COPY kiln kiln
RUN pip install --no-cache-dir .
ENV KILN_HTTP_HOST=0.0.0.0 KILN_LOG_FORMAT=json
# 8080: the gateway's API, /metrics and probes; 9090: a worker's /metrics and probes.
EXPOSE 8080 9090
ENTRYPOINT ["kiln"]
