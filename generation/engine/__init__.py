"""Zhufu's serving engine (no Django here): continuous batching, absorbed-MLA cache, sampling."""
from .engine import Engine
from .outputs import CandidateOutput, PromptTooLongError, RequestOutput, StreamEvent
from .json_constraint import SchemaError
from .sampler import InvalidRequestError, SamplingParams

__all__ = [
    "CandidateOutput",
    "Engine",
    "InvalidRequestError",
    "PromptTooLongError",
    "RequestOutput",
    "SamplingParams",
    "SchemaError",
    "StreamEvent",
]
