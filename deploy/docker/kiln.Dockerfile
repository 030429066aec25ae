# Kiln's image: the binary, what it runs beside it (Debian's Python for the
# engine runtime and kernels, PostgreSQL for Lakebase), and the engine runtime
# `kiln setup` installs, baked in (/var/cache/kiln, as root).
#   docker build -f deploy/docker/kiln.Dockerfile -t kiln:latest .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p kiln

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv postgresql ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/kiln /usr/local/bin/kiln
RUN kiln setup
EXPOSE 8080 8443 5432
ENTRYPOINT ["kiln"]
CMD ["serve", "--host", "0.0.0.0", "--data-dir", "/var/lib/kiln"]
