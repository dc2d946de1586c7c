# nanoGPT's shakespeare_char CPU configuration in PyTorch, written for this project from nanoGPT's documented
# settings (not its code): 4 layers, 4 heads, width 128, context 64, batch 12, no bias, no dropout, AdamW betas
# 0.9/0.99 with weight decay 0.1 on matrices, lr 1e-3 -> 1e-4 (warmup 100, cosine to 2000), clip 1.0. It prints
# the exact validation loss over non-overlapping windows of 64, the measure `stage5` reports, to compare the
# spread over seeds (Chapters/5-pretraining.md). Usage: python3 nanogpt_char.py SEED [erf|tanh] [STEPS]
# (nanoGPT's loop runs 2,001 steps; its MLP uses the erf GELU). Needs torch and numpy.
import math, os, sys, time, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
seed = int(sys.argv[1]); act = sys.argv[2] if len(sys.argv) > 2 else "erf"; steps = int(sys.argv[3]) if len(sys.argv) > 3 else 2001
torch.manual_seed(seed)
text = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '../../Shared/Datasets/Data/tinyshakespeare.txt')).read()
chars = sorted(set(text)); stoi = {c: i for i, c in enumerate(chars)}
data = np.array([stoi[c] for c in text], dtype=np.int64); n = len(data)
train, val = torch.from_numpy(data[:int(n * 0.9)]), torch.from_numpy(data[int(n * 0.9):])
V, T, L, H, C, B = len(chars), 64, 4, 4, 128, 12
class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.ln1 = nn.LayerNorm(C, bias=False); s.attn = nn.Linear(C, 3 * C, bias=False); s.proj = nn.Linear(C, C, bias=False)
        s.ln2 = nn.LayerNorm(C, bias=False); s.fc = nn.Linear(C, 4 * C, bias=False); s.out = nn.Linear(4 * C, C, bias=False)
    def forward(s, x):
        b, t, c = x.shape
        q, k, v = s.attn(s.ln1(x)).split(C, dim=2)
        q, k, v = [z.view(b, t, H, c // H).transpose(1, 2) for z in (q, k, v)]
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
        x = x + s.proj(y)
        h = s.fc(s.ln2(x)); h = F.gelu(h, approximate='none' if act == 'erf' else 'tanh')
        return x + s.out(h)
class GPT(nn.Module):
    def __init__(s):
        super().__init__()
        s.wte = nn.Embedding(V, C); s.wpe = nn.Embedding(T, C); s.blocks = nn.ModuleList([Block() for _ in range(L)])
        s.lnf = nn.LayerNorm(C, bias=False); s.head = nn.Linear(C, V, bias=False); s.wte.weight = s.head.weight
        for m in s.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)): nn.init.normal_(m.weight, 0, 0.02)
        for name, p in s.named_parameters():
            if name.endswith('proj.weight') or name.endswith('out.weight'): nn.init.normal_(p, 0, 0.02 / math.sqrt(2 * L))
    def forward(s, idx, targets):
        x = s.wte(idx) + s.wpe(torch.arange(idx.shape[1]))
        for blk in s.blocks: x = blk(x)
        return F.cross_entropy(s.head(s.lnf(x)).view(-1, V), targets.reshape(-1))
model = GPT()
params = [p for p in model.parameters()]
opt = torch.optim.AdamW([{'params': [p for p in params if p.dim() >= 2], 'weight_decay': 0.1},
                         {'params': [p for p in params if p.dim() < 2], 'weight_decay': 0.0}], lr=1e-3, betas=(0.9, 0.99))
def lr_at(it):
    if it < 100: return 1e-3 * (it + 1) / 101
    if it > 2000: return 1e-4
    r = (it - 100) / 1900; return 1e-4 + 0.5 * (1 + math.cos(math.pi * r)) * 0.9e-3
def batch(d):
    ix = torch.randint(len(d) - T, (B,)); return torch.stack([d[i:i + T] for i in ix]), torch.stack([d[i + 1:i + 1 + T] for i in ix])
t0 = time.time()
for it in range(steps):
    for g in opt.param_groups: g['lr'] = lr_at(it)
    x, y = batch(train); loss = model(x, y); loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0); opt.step(); opt.zero_grad(set_to_none=True)
model.eval()
with torch.no_grad():
    starts = list(range(0, len(val) - T, T)); tot = 0.0
    for i in range(0, len(starts), 64):
        s = starts[i:i + 64]; x = torch.stack([val[j:j + T] for j in s]); y = torch.stack([val[j + 1:j + 1 + T] for j in s])
        tot += model(x, y).item() * len(s) * T
print(f"seed {seed} {act} steps {steps}: exact val {tot / (len(starts) * T):.4f} ({len(starts)} windows), {time.time() - t0:.1f} s")
