"""chatcli: one command-line client for ChatGPT web, Dify, Coze and OpenAI-compatible servers."""

__version__ = "0.1.0"
