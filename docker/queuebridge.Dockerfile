# queuebridge from its Debian package: the same .deb tests/package.rs installs and runs.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo install --locked cargo-deb --version '~3.8' \
 && cargo deb --locked --output /queuebridge.deb

FROM debian:bookworm-slim
COPY --from=build /queuebridge.deb /tmp/queuebridge.deb
RUN apt-get update \
 && apt-get install -y --no-install-recommends /tmp/queuebridge.deb \
 && rm -rf /var/lib/apt/lists/* /tmp/queuebridge.deb \
 && install -d -o queuebridge -g queuebridge -m 750 /var/lib/queuebridge
USER queuebridge
EXPOSE 8088 9108
CMD ["queuebridge", "--config", "/etc/queuebridge/queuebridge.toml"]
