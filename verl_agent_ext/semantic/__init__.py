"""Semantic layer: text -> similarity scores (bi-encoder, static, cross-encoder, exact, difflib), one interface."""

from verl_agent_ext.semantic.base import Matcher
from verl_agent_ext.semantic.cross_encoder import CrossEncoderMatcher
from verl_agent_ext.semantic.encoder import EmbeddingMatcher
from verl_agent_ext.semantic.exact import ExactMatcher
from verl_agent_ext.semantic.lexical import DifflibMatcher
from verl_agent_ext.semantic.registry import MATCHERS, make_matcher, shared_matcher
from verl_agent_ext.semantic.static import StaticEmbeddingMatcher

__all__ = [
    "MATCHERS",
    "CrossEncoderMatcher",
    "DifflibMatcher",
    "EmbeddingMatcher",
    "ExactMatcher",
    "Matcher",
    "StaticEmbeddingMatcher",
    "make_matcher",
    "shared_matcher",
]
