# GPT-2 small in Hugging Face transformers, for `stage5 bench --hf`. Two uses:
#   python3 gpt2_small.py save DIR    writes a randomly initialised GPT-2 small (124M parameters, GPT2Config's
#                                     defaults, seed 0) as save_pretrained does: config.json + model.safetensors
#   python3 gpt2_small.py greedy DIR IDS  prints, as JSON, the logits at the last of the prompt IDS (a JSON list) and
#                                     the 8 tokens greedy decoding adds to it (to compare with stage 5's)
#   python3 gpt2_small.py time DIR    times what `stage5 bench --hf DIR` times, in transformers on 2 threads:
#                                     greedy decoding of 128 new tokens after a 16-token prompt with the KV cache
#                                     (batch 1), and the forward pass of a 1024-token prompt (the prefill)
# Needs torch and transformers. Written for this project; the settings are the anchor's.
import sys, time, torch
from transformers import GPT2Config, GPT2LMHeadModel

command, folder = sys.argv[1], sys.argv[2]
torch.set_num_threads(2)
if command == "save":
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(folder)
    sys.exit(0)
model = GPT2LMHeadModel.from_pretrained(folder).eval()
if command == "greedy":
    import json
    ids = torch.tensor([json.loads(sys.argv[3])])
    with torch.inference_mode():
        logits = model(ids).logits[0, -1]
        # every position is attended: without the mask, generate takes the pad id for padding wherever it occurs
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, min_new_tokens=8,
                             do_sample=False, pad_token_id=model.config.eos_token_id)
    print(json.dumps({"logits": logits.tolist(), "tokens": out[0, ids.shape[1]:].tolist()}))
    sys.exit(0)
generator = torch.Generator().manual_seed(1)
prompt = torch.randint(0, model.config.vocab_size, (1, 16), generator=generator)
long_prompt = torch.randint(0, model.config.vocab_size, (1, model.config.n_positions), generator=generator)
with torch.inference_mode():
    mask = torch.ones_like(prompt)
    model.generate(prompt, attention_mask=mask, max_new_tokens=8, min_new_tokens=8, do_sample=False,
                   pad_token_id=model.config.eos_token_id)  # warm-up
    decode = []
    for _ in range(3):
        start = time.perf_counter()
        model.generate(prompt, attention_mask=mask, max_new_tokens=128, min_new_tokens=128, do_sample=False,
                       pad_token_id=model.config.eos_token_id)
        decode.append(time.perf_counter() - start)
    prefill = []
    for _ in range(3):
        start = time.perf_counter()
        model(long_prompt, use_cache=True)
        prefill.append(time.perf_counter() - start)
decode.sort(), prefill.sort()
print(f"transformers: greedy decoding, 16-token prompt, 128 new tokens: {128 / decode[1]:.1f} tokens/s (median of 3)")
print(f"transformers: prefill of {model.config.n_positions} tokens: {prefill[1]:.2f} s (median of 3)")
