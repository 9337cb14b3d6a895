# Prometheus (Debian 12's package, as in the tests) with the repository's prometheus/prometheus.yml.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus \
 && rm -rf /var/lib/apt/lists/*
COPY prometheus/prometheus.yml /usr/share/queuebridge/prometheus.yml
RUN sed -e 's#@INTERVAL@#15s#; s#@TARGET@#queuebridge:9108#' \
        /usr/share/queuebridge/prometheus.yml > /etc/prometheus/prometheus.yml \
 && promtool check config /etc/prometheus/prometheus.yml
USER prometheus
EXPOSE 9090
CMD ["prometheus", "--config.file=/etc/prometheus/prometheus.yml", \
     "--storage.tsdb.path=/var/lib/prometheus/metrics2", "--web.listen-address=:9090"]
