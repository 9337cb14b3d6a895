-- mod_pascom: lets pascom "mobydick" clients talk to queuebridge through Prosody.
--
-- pascom clients send their commands as <iq><cmd xmlns="http://www.pascom.net/mobydick"/></iq>
-- without a 'to' (addressed to their own account), as pascom's own server expects. This module,
-- loaded on the users' VirtualHost:
--
--  * re-addresses those IQs (and ones sent to the host itself) to the queuebridge component;
--  * gives the component's answer the 'from' the client expects (its own account, or the host
--    it addressed), so the client matches it to its request;
--  * tells the component when a client session ends (an unavailable presence from the full
--    JID), so queuebridge drops that session's subscriptions.
--
-- Configuration, in the VirtualHost section:
--   modules_enabled = { ...; "pascom" }
--   pascom_component = "pbx.example.test"   -- default: "pbx." .. the host
--
-- Clients that address the component directly need none of this.

local st = require "util.stanza";
local jid_bare = require "util.jid".bare;

local NS = "http://www.pascom.net/mobydick";
local component = module:get_option_string("pascom_component", "pbx." .. module.host);
-- How long an answer is waited for; queuebridge answers every command within 20 s.
local answer_timeout = module:get_option_number("pascom_answer_timeout", 60);

-- "full JID <space> id" -> the requests waiting for an answer, oldest first:
-- { from = the 'from' the answer must carry, at = time }
local pending = {};
local pending_count = 0;
local max_pending = module:get_option_number("pascom_max_pending", 10000);

local function forward(event)
	local origin, stanza = event.origin, event.stanza;
	if origin.type ~= "c2s" or not origin.full_jid then
		return; -- not a local client's command
	end
	if pending_count >= max_pending then
		origin.send(st.error_reply(stanza, "wait", "resource-constraint", "too many commands in progress"));
		return true;
	end
	-- Keyed by session and id; a session that reuses an id before the first answer came has
	-- its requests queued under that key, answered in order (queuebridge answers each one).
	local key = origin.full_jid .. " " .. (stanza.attr.id or "");
	local waiting = pending[key];
	if not waiting then
		waiting = {};
		pending[key] = waiting;
	end
	waiting[#waiting + 1] = { from = stanza.attr.to or jid_bare(origin.full_jid), at = os.time() };
	pending_count = pending_count + 1;
	local copy = st.clone(stanza);
	copy.attr.from = origin.full_jid;
	copy.attr.to = component;
	module:send(copy);
	return true;
end

local function on_self(event)
	-- A command without 'to', or to the user's own bare JID.
	if event.to_self or event.stanza.attr.to == nil then
		return forward(event);
	end
end

module:hook("iq/bare/" .. NS .. ":cmd", on_self, 10);
module:hook("iq/self/" .. NS .. ":cmd", on_self, 10);
module:hook("iq/host/" .. NS .. ":cmd", forward, 10);

-- The component's answer to a forwarded command: restore the address the client used.
local function answer(event)
	local stanza = event.stanza;
	if stanza.attr.from ~= component then
		return;
	end
	local key = (stanza.attr.to or "") .. " " .. (stanza.attr.id or "");
	local waiting = pending[key];
	if waiting then
		local request = table.remove(waiting, 1);
		if #waiting == 0 then
			pending[key] = nil;
		end
		pending_count = pending_count - 1;
		stanza.attr.from = request.from;
	end
end

module:hook("iq/full", answer, 10);

module:add_timer(answer_timeout, function()
	local now = os.time();
	for key, waiting in pairs(pending) do
		while waiting[1] and now - waiting[1].at > answer_timeout do
			table.remove(waiting, 1);
			pending_count = pending_count - 1;
		end
		if #waiting == 0 then
			pending[key] = nil;
		end
	end
	return answer_timeout;
end);

-- A client session ended: tell the component.
module:hook("resource-unbind", function(event)
	local session = event.session;
	if session and session.full_jid then
		module:send(st.presence({ from = session.full_jid, to = component, type = "unavailable" }));
	end
end);

module:log("info", "routing mobydick commands of %s to %s", module.host, component);
