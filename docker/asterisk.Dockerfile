# Asterisk 22 from Debian's package with the repository's asterisk-conf/, rendered the way the
# tests render it (tests/common/asterisk.rs), AMI opened to the compose network.
FROM debian:sid-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends asterisk \
 && rm -rf /var/lib/apt/lists/*
COPY asterisk-conf/ /usr/share/queuebridge/asterisk-conf/
RUN base=/var/lib/qb-asterisk \
 && moddir=$(dirname "$(ls /usr/lib/*/asterisk/modules/app_queue.so)") \
 && mkdir -p "$base/etc" "$base/lib" "$base/agi" "$base/spool" "$base/run" "$base/log" \
 && for f in /usr/share/queuebridge/asterisk-conf/*.conf; do \
      sed -e "s#@BASE@#$base#g; s#@MODDIR@#$moddir#g; s#@AMI_PORT@#5038#g; s#@AMI_SECRET@#demo-secret#g" \
          -e "s#^bindaddr = 127.0.0.1#bindaddr = 0.0.0.0#" \
          "$f" > "$base/etc/$(basename "$f")"; \
    done
EXPOSE 5038
CMD ["asterisk", "-f", "-C", "/var/lib/qb-asterisk/etc/asterisk.conf"]
