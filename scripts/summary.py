"""Prints a compact view of GET /api/v1/queues (read from stdin) for the demo."""
import json
import sys
import time


def member_line(m):
    if m["paused"]:
        what = "paused (%s)" % m["paused_reason"]
    elif m["in_call"]:
        what = "on a call"
    else:
        what = m["status_name"]
    return "%s: %s [%d calls]" % (m["name"], what, m["calls_taken"])


state = json.load(sys.stdin)
print(time.strftime("%H:%M:%S"))
for q in state["queues"]:
    print("  %-8s waiting %d  completed %d  abandoned %d  | %s" % (
        q["name"], q["calls"], q["completed"], q["abandoned"],
        ", ".join(member_line(m) for m in q["members"])))
    for c in q["callers"]:
        print("           %d. %s <%s> prio %d" % (
            c["position"], c["caller_id_name"], c["caller_id_num"], c["priority"]))
    for call in q["connected_calls"]:
        print("           talking: %s <%s> with %s" % (
            call["caller_id_name"], call["caller_id_num"], call["member_name"]))
