"""The demo's tabs: Tokenize (mask → words → mask), Decode (text → masks), Chat (a mask-word VLM)."""

from masktok.demo.tabs.chat import ChatTab
from masktok.demo.tabs.decode import DecodeTab
from masktok.demo.tabs.tokenize import TokenizeTab

__all__ = ["ChatTab", "DecodeTab", "TokenizeTab"]
