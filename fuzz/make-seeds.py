#!/usr/bin/env python3
"""Builds the seed corpus of every fuzz target from the real files (make fuzz calls it; nothing is committed).

usage: make-seeds.py DATA_DIR CONFIGS_DIR OUT_DIR

OUT_DIR/<target>/ receives a few seeds per target: small slices (the first lines) of the real dataset files,
laid out as the target expects (several files cut at '\\x1c', after one options byte for the dataset
readers), the project's own configs, and .npy / responses.jsonl / checkpoint.yaml files made from real rows.
Slices are small on purpose: libFuzzer mutates short inputs much faster.
"""
import csv
import io
import json
import os
import sys

import numpy as np
import yaml

SEP = b"\x1c"


def head(path, lines, encoding_errors=False):
    """The first `lines` lines of a file, as bytes."""
    out = []
    with open(path, "rb") as f:
        for k, line in enumerate(f):
            if k >= lines:
                break
            out.append(line)
    return b"".join(out)


def write(out_dir, target, name, data):
    os.makedirs(os.path.join(out_dir, target), exist_ok=True)
    with open(os.path.join(out_dir, target, name), "wb") as f:
        f.write(data)


def reader_seed(files):
    """A dataset reader's input: the options byte (strict), then its files cut at the separator."""
    return b"\x00" + SEP.join(files)


def movielens_seeds(data, out):
    ml100k, latest = os.path.join(data, "ml-100k"), os.path.join(data, "ml-latest-small")
    ml1m = os.path.join(data, "ml-1m")
    for n in (10, 40):
        write(out, "fuzz_read_ml-100k", f"head{n}", reader_seed(
            [head(f"{ml100k}/u.data", n), head(f"{ml100k}/u.item", n), head(f"{ml100k}/u.genre", 19)]))
        write(out, "fuzz_read_ml-latest-small", f"head{n}", reader_seed(
            [head(f"{latest}/ratings.csv", n), head(f"{latest}/movies.csv", n)]))
        # ml-1m's ratings.dat is not in the shared data: the same rows of ml-100k in its '::' layout.
        ratings = head(f"{ml100k}/u.data", n).replace(b"\t", b"::")
        write(out, "fuzz_read_ml-1m", f"head{n}", reader_seed([ratings, head(f"{ml1m}/movies.dat", n)]))
        # generic: ml-latest-small's ratings and titles (quoted, with commas) in the generic columns.
        rows = list(csv.reader(io.StringIO(head(f"{latest}/ratings.csv", n + 1).decode())))[1:]
        inter = "session_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for u, i, _, t in rows)
        movies = list(csv.reader(io.StringIO(head(f"{latest}/movies.csv", n + 1).decode())))[1:]
        items = io.StringIO()
        w = csv.writer(items, lineterminator="\n")
        w.writerow(["item_id", "title"])
        for m in movies:
            w.writerow([m[0], m[1]])
        write(out, "fuzz_read_generic", f"head{n}", reader_seed([inter.encode(), items.getvalue().encode()]))


def beauty_seed(data, out, n):
    """The first n users of Beauty, every file made consistent with them (ranks among their ASINs)."""
    d = os.path.join(data, "amazon-beauty-2014")
    seq = head(f"{d}/user_sequence.txt", n).decode().splitlines()
    times = head(f"{d}/Beauty_time_org_rank.txt", n).decode().splitlines()
    users = [line.split() for line in seq]
    asins = sorted({a for u in users for a in u[1:]})
    rank = {a: k + 1 for k, a in enumerate(asins)}
    items = "".join(f"{k + 1} " + " ".join(str(rank[a]) for a in u[1:]) + "\n" for k, u in enumerate(users))
    with open(f"{d}/session_id_to_int.json") as f:
        sessions = json.load(f)
    with open(f"{d}/item_id_to_int.json") as f:
        item_ids = json.load(f)
    session_map = {u[0]: sessions[u[0]] for u in users if u[0] in sessions}
    item_map = {a: item_ids[a] for a in asins if a in item_ids}
    wanted = set(item_map.values())
    lookup = io.StringIO()
    w = csv.writer(lookup, lineterminator="\n")
    with open(f"{d}/products_lookup.csv", newline="") as f:
        r = csv.reader(f)
        w.writerow(next(r))
        for row in r:
            if int(row[1]) in wanted:
                w.writerow(row)
    files = ["\n".join(seq) + "\n", items, "\n".join(times) + "\n", json.dumps(session_map), json.dumps(item_map),
             lookup.getvalue()]
    write(out, "fuzz_read_beauty", f"users{n}", reader_seed([x.encode() for x in files]))


def config_seeds(configs, out):
    def text(name):
        with open(os.path.join(configs, name), "rb") as f:
            return f.read()

    # a.yaml includes b.yaml (defaults), which includes c.yaml (a model's settings).
    beauty = text("beauty.yaml").replace(b"include: defaults.yaml", b"include: b.yaml")
    defaults = b"include: [c.yaml]\n" + text("defaults.yaml")
    write(out, "fuzz_config_yaml", "beauty", SEP.join([beauty, defaults, text("models/srgnn.yaml")]))
    write(out, "fuzz_config_yaml", "cycle", SEP.join([b"include: b.yaml\n", b"include: [a.yaml]\n"]))
    cfg = yaml.safe_load(text("defaults.yaml"))
    lines = []

    def flatten(prefix, node):
        if isinstance(node, dict):
            for k, v in node.items():
                flatten(f"{prefix}{k}.", v)
        else:
            lines.append(f"{prefix[:-1]}={yaml.safe_dump(node, default_flow_style=True).strip().removesuffix('...').strip()}")

    flatten("", cfg)
    write(out, "fuzz_config_set", "defaults", "\n".join(lines).encode())
    write(out, "fuzz_config_set", "readme", b"train.epochs=3\nmodel=tagnn\nmodels.srgnn.step=2\nintent.views=[long]\n")
    record = {"intents_dir": "../stages/intents-0123abcd", "config": dict(cfg, models={"srgnn": yaml.safe_load(text("models/srgnn.yaml"))})}
    write(out, "fuzz_checkpoint_yaml", "record", yaml.safe_dump(record).encode())


def npy_and_responses_seeds(data, out):
    ratings = np.loadtxt(os.path.join(data, "ml-100k", "u.data"), dtype=np.int64, max_rows=12)
    for name, arr in (("int64", ratings), ("float32", (ratings[:, 2:] / 5.0).astype(np.float32)),
                      ("scalar", np.float32(ratings[0, 2])), ("vector", ratings[:, 1].copy())):
        buf = io.BytesIO()
        np.save(buf, arr)
        write(out, "fuzz_npy", name, buf.getvalue())
    titles = [row[1] for row in csv.reader(io.StringIO(head(os.path.join(data, "ml-latest-small", "movies.csv"), 9).decode()))][1:]
    lines = [json.dumps({"sample": k // 2, "view": ("long", "short")[k % 2], "prompt_hash": f"{k:016x}",
                         "model": "llama:tiny.gguf", "response": t, "prompt_tokens": 100 + k,
                         "completion_tokens": 7, "seconds": 0.25}) for k, t in enumerate(titles)]
    write(out, "fuzz_responses_jsonl", "records", ("\n".join(lines) + "\n").encode())
    write(out, "fuzz_responses_jsonl", "torn", ("\n".join(lines[:3]) + "\n" + lines[3][:20]).encode())


def serve_request_seeds(data, out):
    rows = list(csv.reader(io.StringIO(head(os.path.join(data, "amazon-beauty-2014", "products_lookup.csv"), 6).decode())))[1:]
    ids = [r[1] for r in rows]
    bodies = {"items": {"items": ids[:3], "k": 20, "explain": True, "exclude_seen": False},
              "integers": {"items": [int(i) for i in ids[:2]], "k": 5},
              "session": {"session_id": "visitor-17", "click": ids[0], "k": 10, "explain": False},
              "empty": {"items": []}}
    for name, body in bodies.items():
        write(out, "fuzz_serve_request", name, json.dumps(body).encode())


# The dataset folders the seeds are cut from (every target's seeds are made in one pass).
DATASETS = ("ml-100k", "ml-1m", "ml-latest-small", "amazon-beauty-2014")


def main():
    data, configs, out = sys.argv[1:4]
    missing = [d for d in DATASETS if not os.path.isdir(os.path.join(data, d))]
    if missing:
        sys.exit(f"make-seeds.py: the seeds are cut from real data, and {data} lacks {', '.join(missing)}; "
                 f"set LLM4SBR_DATA_DIR to the folder holding {', '.join(DATASETS)} (README, Data)")
    movielens_seeds(data, out)
    for n in (4, 12):
        beauty_seed(data, out, n)
    config_seeds(configs, out)
    npy_and_responses_seeds(data, out)
    serve_request_seeds(data, out)


if __name__ == "__main__":
    main()
