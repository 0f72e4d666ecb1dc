#!/usr/bin/env python3
"""Builds tiny random-weight GGUF models for the tests, from the vocab-only files in the llama.cpp source.

    scripts/make-tiny-models.py OUT_DIR [--llama-dir third_party/llama.cpp]

Writes OUT_DIR/tiny-qwen2-chat.gguf (a 2-layer Qwen2 chat model with Qwen2's real tokenizer and chat
template) and OUT_DIR/tiny-bert-embed.gguf (a 2-layer BERT embedding model with BGE's tokenizer, mean
pooling). The weights are random (seeded), so the text they generate is nonsense, but loading,
tokenizing, chat templating, batched decoding and pooling run through llama.cpp's real code paths.

The chat model is shaped so that greedy decoding gives non-empty answers that depend on the prompt (tests
that compare answers must not compare empty strings): its output layer is untied and biased toward
ordinary lowercase word tokens through one residual dimension that every token embedding sets and no layer
writes, and its attention is sharp, so each answer follows the tokens of its own prompt.
With --qwen2-7b-shaped it writes instead a model of Qwen2-7B's real shapes with random weights (~15 GB),
for measuring the LLM stage on a GPU (bench/infer_vs_batched_bench.sh).
Needs numpy (Debian's python3-numpy) and the llama.cpp source's own gguf-py.
"""
import argparse
import os
import re
import sys

import numpy as np


def copy_tokenizer(reader, writer, gguf):
    """Copies every tokenizer.* key of a vocab-only GGUF file."""
    for name, field in reader.fields.items():
        if not name.startswith("tokenizer."):
            continue
        types = field.types
        if types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(name, field.contents(), types[0], sub_type=types[1])
        else:
            writer.add_key_value(name, field.contents(), types[0])


def n_vocab(reader):
    return len(reader.fields["tokenizer.ggml.tokens"].contents())


# Byte-level BPE tokens of a lowercase ASCII word after a space (GPT-2's "Ġ" marks the space).
WORD = re.compile("\u0120[a-z]{3,10}")


def qwen2_writer(gguf, reader, out, name, n_ctx, n_embd, n_head, n_head_kv, n_ff, n_layer):
    """A GGUF writer with the header of a Qwen2 model of these shapes (f16) and the vocab file's tokenizer."""
    w = gguf.GGUFWriter(out, "qwen2")
    w.add_name(name)
    w.add_block_count(n_layer)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_rope_freq_base(1000000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    copy_tokenizer(reader, w, gguf)
    return w


def write_qwen2(gguf, vocab_file, out, rng):
    reader = gguf.GGUFReader(vocab_file)
    vocab = n_vocab(reader)
    n_embd, n_head, n_head_kv, n_ff, n_layer = 64, 4, 2, 128, 2
    head_dim = n_embd // n_head
    w = qwen2_writer(gguf, reader, out, "tiny-qwen2-chat (random weights, for tests)", 4096, n_embd, n_head, n_head_kv,
                     n_ff, n_layer)

    def random(*shape, scale):
        return rng.standard_normal(shape) * scale

    def t(name, *shape, dtype=np.float16, scale=0.02):
        w.add_tensor(name, random(*shape, scale=scale).astype(dtype))

    def no_bias_writes(weight):
        # Row 0 of a layer's output projection would write the bias dimension; keep it constant.
        weight[0, :] = 0
        return weight.astype(np.float16)

    # Dimension 0 of the residual stream is 1 for every token and no layer writes it, so the output layer's
    # column 0 is a bias: ordinary word tokens (" cream", " night") win over newlines, punctuation, special
    # and end-of-generation tokens, and among them the prompt-dependent rest of the hidden state decides.
    embd = random(vocab, n_embd, scale=1.0)
    embd[:, 0] = 1.0
    w.add_tensor("token_embd.weight", embd.astype(np.float16))
    out = random(vocab, n_embd, scale=0.5)
    out[:, 0] = 0.0
    words = [i for i, tok in enumerate(reader.fields["tokenizer.ggml.tokens"].contents()) if WORD.fullmatch(tok)]
    out[words, 0] = 40.0
    w.add_tensor("output.weight", out.astype(np.float16))
    w.add_tensor("output_norm.weight", np.ones(n_embd, dtype=np.float32))
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, dtype=np.float32))
        # Large query and key weights make attention sharp: a head looks at a few tokens of the prompt.
        t(f"blk.{i}.attn_q.weight", n_embd, n_embd, scale=0.5)
        t(f"blk.{i}.attn_k.weight", n_head_kv * head_dim, n_embd, scale=0.5)
        t(f"blk.{i}.attn_v.weight", n_head_kv * head_dim, n_embd, scale=0.3)
        t(f"blk.{i}.attn_q.bias", n_embd, dtype=np.float32)
        t(f"blk.{i}.attn_k.bias", n_head_kv * head_dim, dtype=np.float32)
        t(f"blk.{i}.attn_v.bias", n_head_kv * head_dim, dtype=np.float32)
        w.add_tensor(f"blk.{i}.attn_output.weight", no_bias_writes(random(n_embd, n_embd, scale=0.3)))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, dtype=np.float32))
        t(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        w.add_tensor(f"blk.{i}.ffn_down.weight", no_bias_writes(random(n_embd, n_ff, scale=0.02)))
    finish(w)


def write_qwen2_7b_shaped(gguf, vocab_file, out, rng):
    """Qwen2-7B's real shapes (28 layers, 3584 wide, 28 query and 4 key-value heads, 18944 FFN; ~15 GB in
    f16) with random weights: for throughput measurements of the LLM stage on a GPU, never for answers.
    One random block per tensor shape is shared by every layer, so writing it costs disk time only."""
    reader = gguf.GGUFReader(vocab_file)
    vocab = n_vocab(reader)
    n_embd, n_head, n_head_kv, n_ff, n_layer = 3584, 28, 4, 18944, 28
    kv = n_head_kv * (n_embd // n_head)
    w = qwen2_writer(gguf, reader, out, "qwen2-7b-shaped (random weights, for throughput measurements)", 32768, n_embd,
                     n_head, n_head_kv, n_ff, n_layer)
    blocks = {}

    def block(*shape, dtype=np.float16, scale=0.02):
        if (shape, dtype) not in blocks:
            blocks[(shape, dtype)] = (rng.standard_normal(shape, dtype=np.float32) * scale).astype(dtype)
        return blocks[(shape, dtype)]

    ones = np.ones(n_embd, dtype=np.float32)
    w.add_tensor("token_embd.weight", block(vocab, n_embd))
    w.add_tensor("output.weight", block(vocab, n_embd))
    w.add_tensor("output_norm.weight", ones)
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.attn_q.weight", block(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.attn_k.weight", block(kv, n_embd))
        w.add_tensor(f"blk.{i}.attn_v.weight", block(kv, n_embd))
        w.add_tensor(f"blk.{i}.attn_q.bias", block(n_embd, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_k.bias", block(kv, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_v.bias", block(kv, dtype=np.float32))
        w.add_tensor(f"blk.{i}.attn_output.weight", block(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", ones)
        w.add_tensor(f"blk.{i}.ffn_gate.weight", block(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", block(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", block(n_embd, n_ff))
    finish(w)


def write_bert(gguf, vocab_file, out, rng):
    reader = gguf.GGUFReader(vocab_file)
    vocab = n_vocab(reader)
    n_embd, n_head, n_ff, n_layer, n_ctx = 64, 4, 128, 2, 512
    w = gguf.GGUFWriter(out, "bert")
    w.add_name("tiny-bert-embed (random weights, for tests)")
    w.add_block_count(n_layer)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_layer_norm_eps(1e-12)
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    copy_tokenizer(reader, w, gguf)

    def t(name, *shape, dtype=np.float16, scale=0.05):
        w.add_tensor(name, (rng.standard_normal(shape) * scale).astype(dtype))

    def norm(name):
        w.add_tensor(name + ".weight", np.ones(n_embd, dtype=np.float32))
        w.add_tensor(name + ".bias", np.zeros(n_embd, dtype=np.float32))

    t("token_embd.weight", vocab, n_embd)
    t("token_types.weight", 2, n_embd, dtype=np.float32)
    t("position_embd.weight", n_ctx, n_embd, dtype=np.float32)
    norm("token_embd_norm")
    for i in range(n_layer):
        for p in ("attn_q", "attn_k", "attn_v", "attn_output"):
            t(f"blk.{i}.{p}.weight", n_embd, n_embd)
            t(f"blk.{i}.{p}.bias", n_embd, dtype=np.float32)
        norm(f"blk.{i}.attn_output_norm")
        t(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        t(f"blk.{i}.ffn_up.bias", n_ff, dtype=np.float32)
        t(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
        t(f"blk.{i}.ffn_down.bias", n_embd, dtype=np.float32)
        norm(f"blk.{i}.layer_output_norm")
    finish(w)


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--llama-dir", default=os.path.join(root, "third_party", "llama.cpp"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--qwen2-7b-shaped", action="store_true",
                    help="write only OUT_DIR/qwen2-7b-shaped.gguf (~15 GB): Qwen2-7B's shapes, random weights")
    args = ap.parse_args()
    sys.path.insert(0, os.path.join(args.llama_dir, "gguf-py"))
    import gguf  # noqa: E402  (the pinned source's own gguf-py)

    os.makedirs(args.out_dir, exist_ok=True)
    models = os.path.join(args.llama_dir, "models")
    builds = (("tiny-qwen2-chat.gguf", write_qwen2, "ggml-vocab-qwen2.gguf"),
              ("tiny-bert-embed.gguf", write_bert, "ggml-vocab-bert-bge.gguf"))
    if args.qwen2_7b_shaped:
        builds = (("qwen2-7b-shaped.gguf", write_qwen2_7b_shaped, "ggml-vocab-qwen2.gguf"),)
    for name, builder, vocab in builds:
        out = os.path.join(args.out_dir, name)
        tmp = out + ".tmp"
        builder(gguf, os.path.join(models, vocab), tmp, np.random.default_rng(args.seed))
        os.replace(tmp, out)
        print(f"{out}: {os.path.getsize(out) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
