"""Provider `dify`: a Dify chat, agent or Chatflow app through the service API.

Dify keeps the conversation (the client sends only the new query and the conversation
id), streams SSE, and stops a running answer with `POST /chat-messages/{task_id}/stop`.
`decoder.DifyDecoder` is pure; `client.Dify` owns the socket. Spec: shared/protocols/dify.md.
"""

from chatcli.providers.dify.client import Dify
from chatcli.providers.dify.decoder import DifyDecoder

__all__ = ["Dify", "DifyDecoder"]
