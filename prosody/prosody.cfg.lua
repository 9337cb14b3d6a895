-- Prosody for queuebridge's pascom component. The tests (tests/common/prosody.rs) and
-- docker-compose.yml render this same file, filling in its placeholders.
pidfile = "@RUN@/prosody.pid"
data_path = "@DATA@"
plugin_paths = { "@PLUGINS@" }
interfaces = { "@INTERFACE@" }
c2s_ports = { @C2S_PORT@ }
component_ports = { @COMPONENT_PORT@ }
component_interfaces = { "@INTERFACE@" }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "posix" }
modules_disabled = { "s2s" }
s2s_ports = { }
authentication = "internal_hashed"
-- Plain c2s on a private network for the demo and the tests; give Prosody certificates and
-- require encryption anywhere else.
c2s_require_encryption = false
-- What one client may send in one stanza (Prosody's default is 256 KiB); pascom commands are tiny.
c2s_stanza_size_limit = 64 * 1024
log = { { levels = { min = "@LOG_LEVEL@" }, to = "file", filename = "@LOG@" } }

VirtualHost "@DOMAIN@"
    -- prosody/mod_pascom.lua: routes mobydick IQs without `to` to the component.
    modules_enabled = { "pascom" }
    pascom_component = "@COMPONENT@"

Component "@COMPONENT@"
    component_secret = "@SECRET@"
