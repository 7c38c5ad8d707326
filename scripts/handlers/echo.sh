#!/bin/sh
# Minimal agentroom handler: the message arrives on stdin, stdout is the reply.
# Env: AGENTROOM_FROM (peer label), AGENTROOM_PK (peer key), AGENTROOM_MSG_ID.
text=$(cat)
printf 'echo: %s\n' "$text"
