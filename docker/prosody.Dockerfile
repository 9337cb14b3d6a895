# Prosody (Debian 12's package, as in the tests) with the repository's module and configuration
# template (prosody/), rendered for the compose network.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends prosody \
 && rm -rf /var/lib/apt/lists/*
COPY prosody/mod_pascom.lua /usr/share/queuebridge/prosody/mod_pascom.lua
COPY prosody/prosody.cfg.lua /usr/share/queuebridge/prosody/prosody.cfg.lua
RUN sed -e 's#@RUN@#/run/prosody#; s#@DATA@#/var/lib/prosody#; s#@PLUGINS@#/usr/share/queuebridge/prosody#' \
        -e 's#@INTERFACE@#*#g; s#@C2S_PORT@#5222#; s#@COMPONENT_PORT@#5347#' \
        -e 's#@LOG_LEVEL@#info#; s#@LOG@#/dev/stdout#' \
        -e 's#@DOMAIN@#example.test#g; s#@COMPONENT@#pbx.example.test#g; s#@SECRET@#demo-component-secret#' \
        /usr/share/queuebridge/prosody/prosody.cfg.lua > /etc/prosody/prosody.cfg.lua \
 && mkdir -p /run/prosody && chown prosody:prosody /run/prosody \
 && for user in tweber mmeyer mpasquay; do \
      prosodyctl --config /etc/prosody/prosody.cfg.lua register "$user" example.test demo-pw; \
    done
USER prosody
EXPOSE 5222 5347
CMD ["prosody", "--config", "/etc/prosody/prosody.cfg.lua", "-F"]
