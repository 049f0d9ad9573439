"""Provider `coze` (shared/protocols/coze.md): `provider.Coze` over pure `decoder`s and `codes`."""

from chatcli.providers.coze.provider import Coze

__all__ = ["Coze"]
