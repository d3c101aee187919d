"""Generation backends: the local engine (threads share its batch) and an OpenAI-compatible server (SSE)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from generation.backends import BackendError, LocalEngineBackend, OpenAICompatibleBackend
from generation.engine import SamplingParams
from generation.engine.testing import random_model, toy_tokenizer
from generation.greeting import final_text, sampling_params, write_greetings
from generation.tokenizer import encode_prompt


@pytest.fixture(scope="module")
def backend():
    tokenizer = toy_tokenizer()
    return LocalEngineBackend.from_model(random_model(tokenizer, seed=3), tokenizer, max_slots=6)


def test_local_backend_threads_share_the_engine(backend):
    params = sampling_params(2, 12, seed=11, temperature=0.9, top_p=1.0)  # what the greeting path asks
    alone = backend.generate(encode_prompt(backend.engine.tokenizer, "新年快乐"), params)
    results = {}

    def worker(name, query, seed):
        results[name] = write_greetings(backend, query, 2, max_tokens=12, temperature=0.9, top_p=1.0, seed=seed)

    threads = [threading.Thread(target=worker, args=(i, q, s)) for i, (q, s) in enumerate([("新年快乐", 11), ("生日快乐", 5), ("祝福", 6)])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert results[0] == [final_text(t) for t in alone]  # same seed, same text, whatever ran alongside
    assert len(results) == 3 and all(len(r) == 2 for r in results.values())
    assert backend.engine.cache.free_slots == 6 and not backend.engine.has_unfinished()


def test_local_backend_stopping_early_cancels(backend):
    stream = backend.stream([1, 5, 6, 7], SamplingParams(n=3, max_tokens=50, temperature=1.0, ignore_eos=True))
    next(stream)
    stream.close()
    assert backend.engine.cache.free_slots == 6 and not backend.engine.has_unfinished()


class _FakeServer(BaseHTTPRequestHandler):
    chunks: list = []
    status = 200
    seen: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, body, self.headers.get("Authorization")))
        self.send_response(self.status)
        self.send_header("Content-Type", "text/event-stream" if self.status == 200 else "application/json")
        self.end_headers()
        if self.status != 200:
            self.wfile.write(b'{"error": "model not found"}')
            return
        for chunk in self.chunks:
            self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _FakeServer)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _FakeServer.seen, _FakeServer.status = [], 200
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _choice(index, text, reason=None):
    return {"id": "cmpl-1", "choices": [{"index": index, "text": text, "finish_reason": reason}]}


def test_remote_backend_streams_sse(server):
    _FakeServer.chunks = [_choice(0, "新年"), _choice(1, "万事"), _choice(0, "快乐", "stop"), _choice(1, "如意", "length")]
    backend = OpenAICompatibleBackend(server, model="zhufu-small", api_key="k")
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    params = SamplingParams(n=2, max_tokens=20, temperature=0.7, top_k=5, stop=["。"], seed=3, json_schema=schema)
    events = list(backend.stream("你好", params))
    assert [(e.candidate_index, e.text_delta, e.finished, e.finish_reason) for e in events] == [
        (0, "新年", False, None), (1, "万事", False, None), (0, "快乐", True, "stop"), (1, "如意", True, "length")]
    path, body, auth = _FakeServer.seen[0]
    assert path == "/v1/completions" and auth == "Bearer k"
    assert body["stream"] is True and body["n"] == 2 and body["top_k"] == 5 and body["stop"] == ["。"]
    assert body["response_format"]["json_schema"]["schema"] == schema and body["seed"] == 3
    assert backend.payload("x", SamplingParams(json_schema={"type": "object"}))["response_format"] == {"type": "json_object"}
    assert write_greetings(backend, "新年", 2) == ["新年快乐", "万事如意"]
    assert _FakeServer.seen[-1][1]["prompt"] == "<bos>请只生成一条祝福语：新年<sep>"


def test_remote_backend_reports_errors(server):
    _FakeServer.status = 404
    with pytest.raises(BackendError, match="404"):
        list(OpenAICompatibleBackend(server, model="x").stream("hi", SamplingParams()))
    _FakeServer.status, _FakeServer.chunks = 200, [_choice(0, "半")]
    with pytest.raises(BackendError, match="ended before"):
        list(OpenAICompatibleBackend(server, model="x").stream("hi", SamplingParams()))
    with pytest.raises(BackendError):
        list(OpenAICompatibleBackend("http://127.0.0.1:1", model="x").stream("hi", SamplingParams()))
