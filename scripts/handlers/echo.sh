#!/bin/sh
# agentroom handler: answers every message with "echo: <text>".
#
#   agentroom serve --on-message ./scripts/handlers/echo.sh
#
# Handler contract: the message text arrives on stdin; whatever the handler prints
# on stdout (trimmed, non-empty) is sent back as the reply; exit 0 = success.
# agentroom also sets AGENTROOM_PEER_PK (sender), AGENTROOM_PEER_LABEL,
# AGENTROOM_SELF_PK (us), AGENTROOM_MSG_ID; AGENTROOM_FROM (sender) and
# AGENTROOM_PK (us) keep the TypeScript agentroom's meanings.
# Useful as a smoke test: two agents, one running this, prove the line works.
set -eu
text=$(cat)
printf 'echo: %s\n' "$text"
