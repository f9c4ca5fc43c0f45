"""Pre-flight memory estimate vs measured peak memory on CPU (fp32), one fresh process per measurement.

    HF_HUB_OFFLINE=1 /work/venv/bin/python bench/registry_preflight.py [--hidden 256 --layers 8 --seq 256 --batch 4]

Builds a random Llama of the given size, registers it in a scratch DAMOC_HOME, asks `damoc.registry.preflight`
for its estimate, then measures the peak resident memory (ru_maxrss) of: a calibration forward with every hidden
state kept, one full fine-tuning step with AdamW, and one LoRA step (peft, rank 8 on q,k,v,o,gate,up,down).
Prints estimate, measurement and their ratio per stage (the runtime overhead term is compared as measured:
the process's RSS before the model is built).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, torch
from transformers import AutoModelForCausalLM
torch.manual_seed(0)
torch.set_num_threads(1)
mode, path, seq, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
if mode == "lora":
    import peft  # its import alone costs RSS: count it in the baseline, not in the model's memory
base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
ids = torch.randint(0, model.config.vocab_size, (batch, seq))
if mode == "calibration":
    model.eval()
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
else:
    if mode == "lora":
        from peft import LoraConfig, get_peft_model
        model = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                                      "gate_proj", "up_proj", "down_proj"]))
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    for _ in range(2):       # the second step has the optimizer states allocated
        loss = model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"base_rss": base_rss, "peak_rss": peak}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["DAMOC_HOME"] = str(Path(tmp) / "home")
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        cfg = LlamaConfig(hidden_size=args.hidden, intermediate_size=int(args.hidden * 8 / 3) // 8 * 8,
                          num_hidden_layers=args.layers, num_attention_heads=max(1, args.hidden // 64),
                          num_key_value_heads=max(1, args.hidden // 128), vocab_size=args.vocab,
                          tie_word_embeddings=False)
        torch.manual_seed(0)
        path = Path(tmp) / "model"
        LlamaForCausalLM(cfg).save_pretrained(path)

        from damoc.registry import Candidate, ModelRef, RegistryStore, preflight
        from damoc.settings import Settings

        settings = Settings.load()
        RegistryStore(settings).add(Candidate(name="bench", chat=ModelRef(str(path))))
        pf = preflight(settings, ["bench"], {"seq_len": args.seq, "batch_size": args.batch,
                                             "calib_batch_size": args.batch, "device": "cpu", "lora_rank": 8})
        c = pf.candidates[0]
        est = {"calibration": c.calibration, "full": c.full_ft, "lora": c.lora_ft}
        print(f"model: {c.full_ft.trainable_parameters / 1e6:.1f}M parameters, seq {args.seq}, batch {args.batch}, "
              "fp32 on CPU")
        print(f"{'stage':<12}{'estimate':>12}{'measured':>12}{'ratio':>8}   (both without the runtime baseline)")
        for mode, e in est.items():
            out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path), str(args.seq), str(args.batch)],
                                 capture_output=True, text=True, check=True)
            m = json.loads(out.stdout.strip().splitlines()[-1])
            measured = m["peak_rss"] - m["base_rss"]
            estimate = e.total - e.overhead
            print(f"{mode:<12}{estimate / 1e6:>10.0f}MB{measured / 1e6:>10.0f}MB{estimate / measured:>8.2f}"
                  f"   baseline RSS {m['base_rss'] / 1e6:.0f} MB (overhead term {e.overhead / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
