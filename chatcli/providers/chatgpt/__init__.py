"""Provider `chatgpt`: the ChatGPT web backend-api (spec: shared/protocols/chatgpt.md).

Modules: `answer` (message snapshots -> events), `legacy` (cumulative SSE), `v1` (delta
encoding), `ws` (Azure Web PubSub frames), `sentinel` (chat-requirements, proof of work),
`history` (mapping tree, conversation list), `wire_errors` (HTTP error bodies), `device`
(the stable device id) and `provider` (the sockets). Everything but `provider` and
`ws.Socket` is pure.
"""

from chatcli.providers.chatgpt.provider import ChatGPT

__all__ = ["ChatGPT"]
