#!/usr/bin/env python3
"""make mutants: plant realistic single-line bugs, one at a time, and check that the tests notice.

Each mutation replaces one exact piece of one line (it must occur exactly once in its file) in a scratch copy of
the checkout (copied to /tmp/mutants-<user>/src, whose .build is kept between mutants and between runs, so each
mutant rebuilds only what its file touches). The mutant is then run against the suites that should catch it
(`swift test --filter`), and, if those pass, against `stageN gradcheck`. A mutant is killed when a build of the
tests fails to pass: a failing test, a failing gradient check, a crash or a time-out; it survived when everything
passed. A mutation that no longer compiles is reported as an error (fix the mutation, not the code).

  python3 .ci/mutants.py                 every mutation; ends with "K of N mutations killed"
  python3 .ci/mutants.py --only a,b      only these ids (make mutants ONLY=a,b)
  python3 .ci/mutants.py --list          the ids, files and what each one breaks
  python3 .ci/mutants.py --check         every pattern still matches exactly once (no build)

The exit status is 0 only when every mutant run was killed (and, with --check, every pattern matched once).
"""

import argparse
import getpass
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRATCH = os.path.join("/tmp", "mutants-" + getpass.getuser())
SOURCE = os.path.join(SCRATCH, "src")
TIMEOUT = 900  # seconds for one mutant's tests; longer counts as killed (a hang is a failure too)

S1, S2, S3, S4 = "Stages/1-scalar-autograd", "Stages/2-tensor-autograd", "Stages/3-layers-optimizers", "Stages/4-transformer"
S5 = "Stages/5-pretraining"
S8 = "Stages/8-mixed-precision"
K = "Shared/Kernels"


@dataclass
class Mutation:
    id: str
    path: str
    find: str
    replace: str
    why: str
    tests: str  # a `swift test --filter` regex
    gradcheck: Optional[int] = None  # also run `stageN gradcheck` when the tests pass


# Suites that are fast in a debug build (no end-to-end training runs).
def fast(stage: int, *suites: str) -> str:
    return f"Stage{stage}Tests\\.({'|'.join(suites)})"


GOLDEN = ("GoldenTests", "CheckerCatchesWrongBackwards")

MUTATIONS = [
    # --- Stage 1: the scalar engine, its losses and its optimizer ---
    Mutation("s1-pow-abs", f"{S1}/Autograd/Engine.swift",
             "edges: [Edge(self, p * power(data, p - 1))]", "edges: [Edge(self, p * power(abs(data), p - 1))]",
             "pow's derivative with abs(x)", fast(1, "EngineTests", *GOLDEN), 1),
    Mutation("s1-mul-grad", f"{S1}/Autograd/Engine.swift",
             'op: "*", edges: [Edge(a, b.data), Edge(b, a.data)]', 'op: "*", edges: [Edge(a, b.data), Edge(b, b.data)]',
             "a * b: d/db = b", fast(1, "EngineTests", *GOLDEN), 1),
    Mutation("s1-div-grad", f"{S1}/Autograd/Engine.swift",
             "Edge(b, -a.data / (b.data * b.data))", "Edge(b, -a.data / b.data)",
             "a / b: d/db = -a / b", fast(1, "EngineTests", *GOLDEN), 1),
    Mutation("s1-tanh-grad", f"{S1}/Autograd/Engine.swift",
             'return Value(t, op: "tanh", edges: [Edge(self, 1 - t * t)])',
             'return Value(t, op: "tanh", edges: [Edge(self, 1 - t)])',
             "tanh's derivative 1 - t", fast(1, "EngineTests", *GOLDEN), 1),
    Mutation("s1-overwrite-grad", f"{S1}/Autograd/Engine.swift",
             "edge.parent.grad += edge.derivative * node.grad", "edge.parent.grad = edge.derivative * node.grad",
             "backward overwrites instead of accumulating", fast(1, "EngineTests", *GOLDEN), 1),
    Mutation("s1-sigmoid-grad", f"{S1}/Autograd/Engine.swift",
             'return Value(s, op: "sigmoid", edges: [Edge(self, s * (1 - s))])',
             'return Value(s, op: "sigmoid", edges: [Edge(self, s * (1 + s))])',
             "sigmoid's derivative s (1 + s)", fast(1, "EngineTests", *GOLDEN), 1),
    Mutation("s1-bce-grad", f"{S1}/NN/Losses.swift",
             'return Value(loss, op: "bce", edges: [Edge(self, logistic(z) - y)])',
             'return Value(loss, op: "bce", edges: [Edge(self, logistic(z) + y)])',
             "BCE's derivative sigmoid(z) + y", fast(1, "EngineTests", "LossAndOptimizerTests", *GOLDEN), 1),
    Mutation("s1-sgd-decay", f"{S1}/NN/Optimizers.swift",
             "return learningRate * (1 - (1 - finalFraction) * progress)", "return learningRate * (1 - finalFraction * progress)",
             "SGD's linear decay to the wrong floor", fast(1, "EngineTests", "LossAndOptimizerTests")),
    Mutation("s1-init-range", f"{S1}/NN/Layers.swift",
             'weights = (0..<inputs).map { Value(rng.uniform(-1, 1), label: "w\\($0)") }',
             'weights = (0..<inputs).map { Value(rng.uniform(-0.5, 0.5), label: "w\\($0)") }',
             "weights from U(-0.5, 0.5)", fast(1, "EngineTests", "LayerTests")),

    # --- Stage 2: the tensor engine ---
    Mutation("s2-pow-abs", f"{S2}/Autograd/Ops.swift",
             "derivative: { x, _ in p * power(x, p - 1) })", "derivative: { x, _ in p * power(abs(x), p - 1) })",
             "Tensor.pow's derivative with abs(x)", fast(2, "EngineTests", *GOLDEN), 2),
    Mutation("s2-sqrt-grad", f"{S2}/Autograd/Ops.swift",
             "derivative: { _, y in 1 / (2 * y) })", "derivative: { _, y in 1 / y })",
             "sqrt's derivative 1 / y", fast(2, "EngineTests", *GOLDEN), 2),
    Mutation("s2-masked-fill-grad", f"{S2}/Autograd/Ops.swift",
             "self.addToGrad { g in for i in g.indices where !masked[i] { g[i] += dy[i] } }",
             "self.addToGrad { g in for i in g.indices { g[i] += dy[i] } }",
             "maskedFill passes gradient to masked elements", fast(2, "EngineTests", *GOLDEN), 2),
    Mutation("s2-matmul-da", f"{S2}/Autograd/Ops.swift",
             "transposeA: false, transposeB: true, m: m, n: k, k: n, alpha: 1, a: dp.baseAddress! + o * m * n,",
             "transposeA: false, transposeB: true, m: m, n: k, k: n, alpha: 2, a: dp.baseAddress! + o * m * n,",
             "matmul's dA doubled", fast(2, "EngineTests", *GOLDEN), 2),
    Mutation("s2-accumulate", f"{S2}/Autograd/Engine.swift",
             "contribution.withUnsafeBufferPointer { c in for i in 0..<g.count { g[i] += c[i] } }",
             "contribution.withUnsafeBufferPointer { c in for i in 0..<g.count { g[i] = c[i] } }",
             "a second gradient contribution overwrites the first", fast(2, "EngineTests", *GOLDEN), 2),

    # --- Shared/Kernels: forward and backward loops (fast and reference) ---
    Mutation("k-layernorm-eps-fast", f"{K}/LayerNorm.swift",
             "let s = 1 / (squares / S(n) + eps).squareRoot()", "let s = 1 / ((squares / S(n)).squareRoot() + eps)",
             "LayerNorm with eps outside the square root (fast path)",
             "SharedTests\\.KernelTests|" + fast(3, "FusedAgainstComposedTests")),
    Mutation("s3-layernorm-eps-squared", f"{S3}/NN/Functional.swift",
             "layerNormForward(x, gamma: gamma, beta: beta, y, mean: mean, rstd: rstd, rows: rows, n: n, eps: eps)",
             "layerNormForward(x, gamma: gamma, beta: beta, y, mean: mean, rstd: rstd, rows: rows, n: n, eps: eps * eps)",
             "LayerNorm's eps squared on the way to both kernels (stage 3)", fast(3, "FusedAgainstComposedTests", *GOLDEN), 3),
    Mutation("k-layernorm-unbiased", f"{K}/LayerNorm.swift",
             "    variance /= S(n)\n", "    variance /= S(n - 1)\n",
             "LayerNorm's reference with the unbiased variance", "SharedTests\\.KernelTests"),
    Mutation("k-layernorm-dbeta", f"{K}/LayerNorm.swift",
             "        dbeta[j] += partial[block * 2 * n + n + j]", "        dbeta[j] += partial[block * 2 * n + j]",
             "LayerNorm's dbeta summed from dgamma's partials", "SharedTests\\.KernelTests|" + fast(3, *GOLDEN), 3),
    Mutation("k-headproduct-wide-row", f"{K}/HeadProduct.swift",
             "    x = V(repeating: ap[s &* 7])\n", "    x = V(repeating: ap[s &* 6])\n",
             "the 8 x 32 block of attention's products reads its last row's A from the row above (AVX-512 CPUs)",
             "SharedTests\\.KernelTests"),
    Mutation("k-attention-pack-stride", f"{K}/HeadProduct.swift",
             "(dst + r &* columns).update(from: src + r &* rowStride, count: columns)",
             "(dst + r &* columns).update(from: src + r &* columns, count: columns)",
             "attention gathers a head's rows as if they were contiguous in the packed projection",
             "SharedTests\\.KernelTests"),
    Mutation("k-ce-counts-ignored", f"{K}/CrossEntropy.swift",
             "  for r in 0..<rows where targets[r] != ignoreIndex {\n    total += rowLoss[r]",
             "  for r in 0..<rows {\n    total += rowLoss[r]",
             "cross-entropy's mean counts the ignored rows (fast path)",
             "SharedTests\\.KernelTests|" + fast(3, "FusedAgainstComposedTests")),
    Mutation("k-ce-smoothing-grad", f"{K}/CrossEntropy.swift",
             "  d[target] -= 1 - smoothing\n", "  d[target] -= 1\n",
             "cross-entropy's gradient ignores label smoothing on the target", "SharedTests\\.KernelTests|" + fast(3, *GOLDEN), 3),
    Mutation("k-softmax-shift", f"{K}/Softmax.swift",
             "for k in 0..<n { total += exp(x[base + k * inner] - top) }", "for k in 0..<n { total += exp(x[base + k * inner]) }",
             "softmax's sum not shifted by the max (overflows, and wrong)", fast(2, "EngineTests", *GOLDEN), 2),
    Mutation("k-softmax-backward", f"{K}/Softmax.swift",
             "dx[at] += log ? dy[at] - S.exp(y[at]) * dot : y[at] * (dy[at] - dot)",
             "dx[at] += log ? dy[at] - S.exp(y[at]) * dot : y[at] * dy[at]",
             "softmax's backward without the row's dot product", fast(2, *GOLDEN), 2),
    Mutation("k-gelu-cubic", f"{K}/GELU.swift",
             "@usableFromInline let geluCubic = 0.044_715", "@usableFromInline let geluCubic = 0.047_715",
             "GELU's cubic coefficient", fast(4, "FusedTransformerKernelsTests", "EngineTests")),
    Mutation("k-gelu-backward", f"{K}/GELU.swift",
             "let slope: S = 0.5 * (1 + tanh) + 0.5 * v * (1 - tanh * tanh) * du",
             "let slope: S = 0.5 * (1 + tanh) + 0.5 * v * (1 - tanh) * du",
             "GELU's backward with 1 - t for 1 - t^2", fast(2, *GOLDEN), 2),
    Mutation("k-exp-coefficient", f"{K}/Exp.swift",
             "    p = p * r + 1.0 / 6\n", "    p = p * r + 1.0 / 7\n",
             "the vectorised exp's r^3 coefficient", "SharedTests\\.KernelTests"),
    Mutation("k-adam-correction", f"{K}/Optimizers.swift",
             "w[i] = k.shrink * w[i] - k.lr * (m[i] / k.correction1) / ((v[i] / k.correction2).squareRoot() + k.eps)",
             "w[i] = k.shrink * w[i] - k.lr * m[i] / ((v[i] / k.correction2).squareRoot() + k.eps)",
             "Adam without the first moment's bias correction (fast path)",
             "SharedTests\\.KernelTests|" + fast(3, "OptimizerGoldenTests")),
    Mutation("k-sgd-nesterov", f"{K}/Optimizers.swift",
             "g = nesterov ? g + momentum * b[i] : b[i]", "g = nesterov ? b[i] : b[i]",
             "SGD's Nesterov step is plain momentum", fast(3, "OptimizerGoldenTests")),
    Mutation("k-sgd-dampening", f"{K}/Optimizers.swift",
             "b[i] = firstStep ? g : momentum * b[i] + (1 - dampening) * g", "b[i] = firstStep ? g : momentum * b[i] + g",
             "SGD's momentum ignores dampening", fast(3, "OptimizerGoldenTests")),
    Mutation("k-norm-tail", f"{K}/Norms.swift",
             "for i in whole..<n { partial.0 += Double(x[i]) * Double(x[i]) }", "for i in whole..<n { partial.0 += Double(x[i]) }",
             "the squared norm's tail elements not squared", "SharedTests\\.KernelTests"),
    Mutation("k-attention-scale", f"{K}/AttentionHead.swift",
             "m: tq, n: tk, k: d, part: causal ? .columnsUpToRow(shift: shift) : .all, alpha: 1 / Scalar.sqrt(Scalar(d)),",
             "m: tq, n: tk, k: d, part: causal ? .columnsUpToRow(shift: shift) : .all, alpha: 1 / Scalar(d),",
             "attention's scores scaled by 1/d instead of 1/sqrt(d) (fast forward)",
             "SharedTests\\.KernelTests|" + fast(4, "FusedTransformerKernelsTests")),
    Mutation("k-attention-dropout-backward", f"{K}/AttentionHead.swift",
             "        for j in 0..<end { row[j] *= keep[i * tk + j] }", "        for j in 0..<end { row[j] *= 1 }",
             "attention's backward without the dropout mask (fast path)",
             "SharedTests\\.KernelTests|" + fast(4, "FusedTransformerKernelsTests"), 4),
    Mutation("k-attention-dropout-forward", f"{K}/AttentionHead.swift",
             "      for j in 0..<(tq * tk) { dropped[j] = weights[j] * keep[j] }",
             "      for j in 0..<(tq * tk) { dropped[j] = weights[j] }",
             "attention's forward without the dropout mask (fast path)",
             "SharedTests\\.KernelTests|" + fast(4, "FusedTransformerKernelsTests"), 4),

    # --- Stage 3: layers, losses, optimizers, schedules, the trainer, checkpoints ---
    Mutation("s3-linear-bias-grad", f"{S3}/NN/Functional.swift",
             "for r in 0..<rows { for j in 0..<outputs { g[j] += dp[r * outputs + j] } }",
             "for r in 0..<(rows + 1) / 2 { for j in 0..<outputs { g[j] += dp[r * outputs + j] } }",
             "Linear's bias gradient sums half the rows", fast(3, "FusedAgainstComposedTests", *GOLDEN), 3),
    Mutation("s3-linear-weight-grad", f"{S3}/NN/Functional.swift",
             "transposeA: true, transposeB: false, m: outputs, n: inputs, k: rows, alpha: 1, a: dp.baseAddress!,",
             "transposeA: true, transposeB: false, m: outputs, n: inputs, k: rows, alpha: -1, a: dp.baseAddress!,",
             "Linear's weight gradient with the wrong sign", fast(3, "FusedAgainstComposedTests", *GOLDEN), 3),
    Mutation("s3-dropout-scale", f"{S3}/NN/Functional.swift",
             "return self * (mask * Scalar(1 / (1 - p)))", "return self * (mask * Scalar(1 / p))",
             "dropout scales by 1/p", fast(3, "ModuleTests", *GOLDEN), 3),
    Mutation("s3-init-fan-in", f"{S3}/NN/Layers.swift",
             "      let bound = 1 / fanIn.squareRoot()\n", "      let bound = 1 / fanIn\n",
             "PyTorch's uniform bound 1/fanIn", fast(3, "ModuleTests")),
    Mutation("s3-init-zeros", f"{S3}/NN/Layers.swift",
             "      values = (0..<count).map { _ in rng.uniform(-bound, bound) }\n    case .xavierUniform:",
             "      values = (0..<count).map { _ in 0 * rng.uniform(-bound, bound) }\n    case .xavierUniform:",
             "the uniform initialiser gives zeros", fast(3, "ModuleTests")),
    Mutation("s3-ce-composed-count", f"{S3}/NN/Losses.swift",
             "  let counted = labels.count { $0 != ignoreIndex }\n", "  let counted = labels.count\n",
             "the composed cross-entropy counts ignored rows", fast(3, "FusedAgainstComposedTests")),
    Mutation("s3-ce-fused-count", f"{S3}/NN/Losses.swift",
             "  let scale = 1 / Scalar(sums.counted)", "  let scale = 1 / Scalar(rows)",
             "the fused cross-entropy divides by all rows", fast(3, "FusedAgainstComposedTests")),
    Mutation("s3-decay-rank", f"{S3}/NN/Optimizers.swift",
             "ParameterGroup(parameters.filter { $0.rank >= 2 }, weightDecay: weightDecay),",
             "ParameterGroup(parameters.filter { $0.rank >= 1 }, weightDecay: weightDecay),",
             "biases in the weight-decay group", fast(3, "TrainingTests/theTrainer", "OptimizerGoldenTests")),
    Mutation("s3-adamw-coupled", f"{S3}/NN/Optimizers.swift",
             "let (shrink, coupled) = decoupledWeightDecay ? (1 - lr * decay, Scalar(0)) : (1, decay)",
             "let (shrink, coupled) = decoupledWeightDecay ? (Scalar(1), decay) : (1, decay)",
             "AdamW's decay coupled into the gradient (Adam's L2)", fast(3, "OptimizerGoldenTests")),
    Mutation("s3-adam-step-count", f"{S3}/NN/Optimizers.swift",
             "    let t = Double(stepCount)\n", "    let t = Double(stepCount + 1)\n",
             "Adam's bias correction one step ahead", fast(3, "OptimizerGoldenTests")),
    Mutation("s3-clip-scale", f"{S3}/NN/Optimizers.swift",
             "  let scale = Scalar(maxNorm / (norm + 1e-6))", "  let scale = Scalar(maxNorm / (norm * norm + 1e-6))",
             "clipping divides by the squared norm", fast(3, "ScheduleAndClippingTests")),
    Mutation("s3-warmup", f"{S3}/NN/Schedules.swift",
             "if step < warmup { return Double(step + 1) / Double(warmup + 1) }", "if step < warmup { return Double(step + 1) / Double(warmup) }",
             "warmup reaches the full rate a step early", fast(3, "ScheduleAndClippingTests")),
    Mutation("s3-cosine", f"{S3}/NN/Schedules.swift",
             "return floor + (1 - floor) * 0.5 * (1 + Double.cos(Double.pi * progress))",
             "return floor + (1 - floor) * (1 + Double.cos(Double.pi * progress))",
             "the cosine schedule without its 1/2", fast(3, "ScheduleAndClippingTests")),
    Mutation("s3-trainer-schedule-step", f"{S3}/CLI/Train.swift",
             "optimizer.learningRate = config.lr * schedule.factor(at: optimizer.stepCount)",
             "optimizer.learningRate = config.lr * schedule.factor(at: optimizer.stepCount + 1)",
             "the trainer asks the schedule for step + 1", fast(3, "TrainingTests/theFirstStep")),
    Mutation("s3-trainer-decay-all", f"{S3}/CLI/Train.swift",
             "let groups = ParameterGroup.decayingMatrices(parameters, weightDecay: config.decay)",
             "let groups = [ParameterGroup(parameters, weightDecay: config.decay)]",
             "the trainer decays every parameter", fast(3, "TrainingTests/theTrainer")),
    Mutation("s3-loader-drops-last", f"{S3}/NN/Data.swift",
             "return stride(from: 0, to: count, by: batchSize).map { Array(order[$0..<min($0 + batchSize, count)]) }",
             "return stride(from: 0, to: count - batchSize + 1, by: batchSize).map { Array(order[$0..<($0 + batchSize)]) }",
             "the batch loader drops the last, partial batch", fast(3, "DataTests")),
    Mutation("s3-checkpoint-optimizer-steps", f"{S3}/NN/Checkpoint.swift",
             '"optimizer_steps": String(optimizer.stepCount),', '"optimizer_steps": String(optimizer.stepCount - 1),',
             "a checkpoint saves the optimizer's step count one short", fast(3, "TrainingTests/aResumed")),
    Mutation("s3-checkpoint-rng", f"{S3}/NN/Checkpoint.swift",
             'tensors["rng"] = try SafeTensor([s.0, s.1, s.2, s.3], shape: [4])', 'tensors["rng"] = try SafeTensor([s.1, s.0, s.2, s.3], shape: [4])',
             "a checkpoint saves the generator state scrambled", fast(3, "TrainingTests/aResumed")),

    # --- Stage 4: attention, the GPT, generation, the trainer, checkpoints ---
    Mutation("s4-dropout-no-rescale", f"{S4}/Transformer/Attention.swift",
             "(0..<count).map { _ in random.rng.unit() >= p ? Scalar(1 / (1 - p)) : 0 }",
             "(0..<count).map { _ in random.rng.unit() >= p ? Scalar(1) : 0 }",
             "attention dropout keeps weights unscaled (no 1/(1-p))", fast(4, "FusedTransformerKernelsTests")),
    Mutation("s4-dropout-backward-no-mask", f"{S4}/Transformer/Attention.swift",
             "weights: pp + bh * square, keep: keep == nil ? nil : keepP.start + bh * square, causal: causal,",
             "weights: pp + bh * square, keep: nil, causal: causal,",
             "attention's backward forgets the dropout mask", fast(4, "FusedTransformerKernelsTests"), 4),
    Mutation("s4-dropout-backward-golden", f"{S4}/Transformer/Attention.swift",
             "weights: pp + bh * square, keep: keep == nil ? nil : keepP.start + bh * square, causal: causal,",
             "weights: pp + bh * square, keep: nil, causal: causal,",
             "the same bug against the golden checks alone (the attention_dropout case)", fast(4, "GoldenTests"), 4),
    Mutation("s4-composed-scale", f"{S4}/Transformer/Attention.swift",
             "var scores = q.matmul(k.transposed()) / Scalar.sqrt(Scalar(d))", "var scores = q.matmul(k.transposed()) / Scalar(d)",
             "the composed attention scaled by 1/d", fast(4, "FusedTransformerKernelsTests")),
    Mutation("s4-composed-causal", f"{S4}/Transformer/Attention.swift",
             "let future = (0..<(tq * tk)).map { $0 % tk > $0 / tk + (tk - tq) ? Scalar(1) : 0 }",
             "let future = (0..<(tq * tk)).map { $0 % tk > $0 / tk ? Scalar(1) : 0 }",
             "the composed causal mask ignores the KV-cache offset", fast(4, "FusedTransformerKernelsTests")),
    Mutation("s4-residual-init", f"{S4}/Transformer/GPT.swift",
             "let std = role == .residualProjection ? 0.02 / (2 * Double(layers)).squareRoot() : 0.02",
             "let std = role == .residualProjection ? 0.02 / (2 * Double(layers)) : 0.02",
             "residual projections scaled by 1/(2 layers) instead of its square root", fast(4, "TransformerTests")),
    Mutation("s4-cache-positions", f"{S4}/Transformer/GPT.swift",
             "x = x + positionEmbedding(Array(start..<(start + t)))", "x = x + positionEmbedding(Array(0..<t))",
             "decoding with the cache restarts the positions at 0", fast(4, "TransformerTests")),
    Mutation("s4-sinusoid-cos", f"{S4}/Transformer/GPT.swift",
             "if i + 1 < width { table[pos * width + i + 1] = Scalar(Double.cos(angle)) }",
             "if i + 1 < width { table[pos * width + i + 1] = Scalar(Double.sin(angle)) }",
             "the sinusoidal table has no cosines", fast(4, "TransformerTests")),
    Mutation("s4-topk", f"{S4}/Transformer/Generation.swift",
             "if let topK { order = Array(order.prefix(max(topK, 1))) }", "if let topK { order = Array(order.prefix(topK + 1)) }",
             "top-k keeps k + 1 tokens", fast(4, "TransformerTests")),
    Mutation("s4-temperature", f"{S4}/Transformer/Generation.swift",
             "var probabilities = order.map { Double.exp((values[$0] - top) / temperature) }",
             "var probabilities = order.map { Double.exp((values[$0] - top) * temperature) }",
             "temperature multiplies the logits", fast(4, "TransformerTests")),
    Mutation("s4-trainer-decay-all", f"{S4}/CLI/Train.swift",
             "ParameterGroup.decayingMatrices(parameters, weightDecay: config.weightDecay), learningRate: config.learningRate,",
             "[ParameterGroup(parameters, weightDecay: config.weightDecay)], learningRate: config.learningRate,",
             "the GPT trainer decays biases and LayerNorm parameters", fast(4, "ReversalTrainingTests/theTrainer")),
    Mutation("s4-trainer-schedule-step", f"{S4}/CLI/Train.swift",
             "optimizer.learningRate = config.learningRate * schedule.factor(at: step)",
             "optimizer.learningRate = config.learningRate * schedule.factor(at: step + 1)",
             "the GPT trainer asks the schedule for step + 1", fast(4, "ReversalTrainingTests/theFirstStep")),
    Mutation("s4-decay-rank", f"{S4}/NN/Optimizers.swift",
             "ParameterGroup(parameters.filter { $0.rank >= 2 }, weightDecay: weightDecay),",
             "ParameterGroup(parameters.filter { $0.rank >= 1 }, weightDecay: weightDecay),",
             "biases in the weight-decay group (stage 4)", fast(4, "ReversalTrainingTests/theTrainer", "OptimizerGoldenTests")),
    Mutation("s4-layernorm-eps", f"{S4}/NN/Functional.swift",
             "layerNormForward(x, gamma: gamma, beta: beta, y, mean: mean, rstd: rstd, rows: rows, n: n, eps: eps)",
             "layerNormForward(x, gamma: gamma, beta: beta, y, mean: mean, rstd: rstd, rows: rows, n: n, eps: 10 * eps)",
             "LayerNorm's eps ten times too large (stage 4)", fast(4, "FusedAgainstComposedTests")),
    Mutation("s4-checkpoint-optimizer-state", f"{S4}/NN/Checkpoint.swift",
             'tensors["optimizer.\\(kind).\\(name)"] = try SafeTensor(values, shape: p.shape)',
             'tensors["optimizer.\\(kind).\\(name)"] = try SafeTensor(values.map { $0 * 0 }, shape: p.shape)',
             "a checkpoint saves zeros for Adam's moments", fast(4, "ReversalTrainingTests/aResumed")),
    Mutation("s4-checkpoint-step", f"{S4}/NN/Checkpoint.swift",
             '"format": Self.checkpointFormat, "step": String(step), "optimizer_steps": String(optimizer.stepCount),',
             '"format": Self.checkpointFormat, "step": String(step + 1), "optimizer_steps": String(optimizer.stepCount),',
             "a checkpoint saves the step one ahead", fast(4, "ReversalTrainingTests/aResumed")),

    # --- Stage 5: tokenizers, token files, batches, the pretraining loop and its checkpoints ---
    Mutation("s5-char-order", f"{S5}/Pretraining/Tokenizer.swift",
             "let sorted = Set(characters).sorted { $0.value < $1.value }",
             "let sorted = Set(characters).sorted { $0.value > $1.value }",
             "the character tokenizer's ids are not nanoGPT's (reverse order)", fast(5, "CharTokenizerTests")),
    Mutation("s5-bpe-tie", f"{S5}/Pretraining/BPE.swift",
             "$0.count != $1.count ? $0.count > $1.count : $0.pair < $1.pair",
             "$0.count != $1.count ? $0.count > $1.count : $0.pair > $1.pair",
             "BPE ties go to the larger pair", fast(5, "BPETests")),
    Mutation("s5-split", f"{S5}/Pretraining/Corpus.swift",
             "offsetBy: Int(Double(scalars.count) * 0.9))", "offsetBy: Int(Double(scalars.count) * 0.8))",
             "an 80/20 split", fast(5, "CorpusTests")),
    Mutation("s5-token-vocab-bound", f"{S5}/Pretraining/TokenFile.swift",
             "for i in 0..<count where Int(UInt16(littleEndian: ids[i])) >= vocabulary {",
             "for i in 0..<count where Int(UInt16(littleEndian: ids[i])) > vocabulary {",
             "a token file may hold the id equal to the vocabulary size", fast(5, "TokenFileTests")),
    Mutation("s5-targets-unshifted", f"{S5}/Pretraining/Batches.swift",
             "      tokens.append(from: start + 1, length: context, into: &targets)",
             "      tokens.append(from: start, length: context, into: &targets)",
             "the targets are the inputs, not the next ids", fast(5, "WindowSamplerTests")),
    Mutation("s5-epoch-overlap", f"{S5}/Pretraining/Batches.swift",
             "var starts = Array(stride(from: Int32(phase), to: Int32(count - context), by: context))",
             "var starts = Array(stride(from: Int32(phase), to: Int32(count - context), by: context / 2))",
             "an epoch's windows overlap", fast(5, "WindowSamplerTests")),
    Mutation("s5-exact-windows", f"{S5}/Pretraining/Batches.swift",
             "Array(stride(from: 0, through: tokens.count - context - 1, by: context))",
             "Array(stride(from: 0, to: tokens.count - context - 1, by: context))",
             "the exact loss leaves out the last whole window", fast(5, "WindowSamplerTests")),
    Mutation("s5-trainer-decay-all", f"{S5}/Pretraining/CausalLM.swift",
             "ParameterGroup.decayingMatrices(parameters, weightDecay: config.weightDecay), learningRate: config.learningRate,",
             "[ParameterGroup(parameters, weightDecay: config.weightDecay)], learningRate: config.learningRate,",
             "the pretraining loop decays the LayerNorm gains", fast(5, "CausalLMTrainerTests/theTrainer")),
    Mutation("s5-trainer-schedule-step", f"{S5}/Pretraining/CausalLM.swift",
             "learningRate: config.learningRate, factor: schedule.factor(at: step),",
             "learningRate: config.learningRate, factor: schedule.factor(at: step + 1),",
             "the pretraining loop asks the schedule for step + 1", fast(5, "CausalLMTrainerTests/theFirstStep")),
    Mutation("s5-accumulation-unscaled", f"{S5}/Pretraining/CausalLM.swift",
             "(accumulation == 1 ? loss : loss / Float(accumulation)).backward()",
             "loss.backward()",
             "accumulated gradients are summed, not averaged", fast(5, "CausalLMTrainerTests/accumulation")),
    Mutation("s5-checkpoint-sampler-rng", f"{S5}/NN/Checkpoint.swift",
             'for (name, generator) in [("rng", random.rng), ("sampler_rng", sampler.rng)] {',
             'for (name, generator) in [("rng", random.rng), ("sampler_rng", random.rng)] {',
             "a checkpoint saves the dropout generator as the sampler's", fast(5, "CausalLMTrainerTests/aResumed")),
    Mutation("s5-checkpoint-sampler-position", f"{S5}/NN/Checkpoint.swift",
             "restoreSampler(rng: SeededRNG(state: samplerRNG), epoch: epoch, position: position)",
             "restoreSampler(rng: SeededRNG(state: samplerRNG), epoch: epoch, position: 0)",
             "a resume restarts the epoch", fast(5, "CausalLMTrainerTests/aResumed", "MaskedLMTrainerTests/aResumed")),
    Mutation("s5-mask-rates", f"{S5}/Pretraining/Masking.swift",
             "if rng.unit() < 0.8 {", "if rng.unit() < 0.9 {",
             "90% of the chosen tokens become [MASK], not 80%", fast(5, "MaskingTests")),
    Mutation("s5-mask-specials", f"{S5}/Pretraining/Masking.swift",
             "for (position, id) in tokens.enumerated() where !specials.contains(id) {",
             "for (position, id) in tokens.enumerated() {",
             "[CLS] and [SEP] may be chosen for prediction", fast(5, "MaskingTests")),
    Mutation("s5-nsp-same-document", f"{S5}/Pretraining/SentencePairs.swift",
             "if other >= d { other += 1 }", "if other > d { other += 1 }",
             "a random B may come from A's own speech", fast(5, "SentencePairTests")),
    Mutation("s5-post-ln-order", f"{S5}/Transformer/GPT.swift",
             "return norm2(x + mlp(x))", "return norm2(x) + mlp(x)",
             "a post-LN block normalises before the MLP's sum", fast(5, "BERTTests")),
    Mutation("s5-gelu-erf-slope", "Shared/Kernels/GELU.swift",
             "dx[i] = dy[i] * (cdf[i] + v * S.fastExp(-0.5 * v * v) * S(inverseSqrt2Pi))",
             "dx[i] = dy[i] * (cdf[i] + S.fastExp(-0.5 * v * v) * S(inverseSqrt2Pi))",
             "the exact GELU's slope loses its factor x", fast(5, "GoldenTests", "GELUErfTests")),
    Mutation("s5-backward-keeps-every-grad", f"{S5}/Autograd/Engine.swift",
             "if !node.retainsGrad { node.gradStorage = nil }", "if false { node.gradStorage = nil }",
             "backward holds every activation's gradient to the end", fast(5, "EngineTests")),
    Mutation("s5-generate-no-crop", f"{S5}/Transformer/Generation.swift",
             "if let cached = caches?.first?.count, tokens.count <= config.context {",
             "if let cached = caches?.first?.count {",
             "decoding with the cache past the context", "Stage5Tests\\.CommandLineTests/trainWrites"),

    # --- Stage 8: number formats, autocast, the loss scaler, master weights ---
    Mutation("s8-bf16-truncates", f"{S8}/Precision/Formats.swift",
             "let even = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000", "let even = bits & 0xFFFF_0000",
             "bf16 by truncation instead of rounding", fast(8, "FormatTests", "AutocastTests")),
    Mutation("s8-bf16-ties-away", f"{S8}/Precision/Formats.swift",
             "bitPattern = UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)",
             "bitPattern = UInt16(truncatingIfNeeded: (bits &+ 0x8000) >> 16)",
             "bf16 ties rounded away from zero", fast(8, "FormatTests")),
    Mutation("s8-e4m3-overflows", f"{S8}/Precision/Formats.swift",
             "largest: 448, overflow: 448)", "largest: 448, overflow: .infinity)",
             "E4M3 overflows to infinity instead of saturating", fast(8, "FormatTests")),
    Mutation("s8-scaler-no-backoff", f"{S8}/Precision/GradScaler.swift",
             "scale *= backoffFactor", "scale *= 1",
             "the scale never backs off", fast(8, "GradScalerTests", "MixedPrecisionTests")),
    Mutation("s8-unscale-twice", f"{S8}/Precision/GradScaler.swift",
             "if !unscaled { unscale(parameters) }", "unscaled = false; unscale(parameters)",
             "step unscales again after unscale", fast(8, "GradScalerTests")),
    Mutation("s8-stale-working-copy", f"{S8}/Precision/MixedPrecision.swift",
             "masters[ObjectIdentifier(p)] = p.storage\n          p.pack()",
             "masters[ObjectIdentifier(p)] = p.storage",
             "the working copy is not rounded and packed from the new masters", fast(8, "MixedPrecisionTests")),
    Mutation("s8-results-not-packed", f"{S8}/Autograd/Engine.swift",
             "if format.bits == 16 && requiresGrad {", "if false && format.bits == 16 && requiresGrad {",
             "the results the graph keeps are rounded but held in fp32", fast(8, "StorageTests")),
    Mutation("s8-pack-truncates", f"{S8}/Precision/Formats.swift",
             "let rounded = UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)",
             "let rounded = UInt16(truncatingIfNeeded: bits >> 16)",
             "packing bf16 truncates instead of rounding", fast(8, "StorageTests")),
    Mutation("s8-accumulation-rounds", f"{S8}/Autograd/Engine.swift",
             "leaf.accumulateGrad(new, rounding: false)", "leaf.accumulateGrad(new)",
             "micro-batches accumulate in bf16, not fp32", fast(8, "MixedPrecisionTests")),
    Mutation("s8-layernorm-low", f"{S8}/Precision/Autocast.swift",
             '"softmax", "logSoftmax", "layerNorm",', '"softmax", "logSoftmax",',
             "LayerNorm runs in the low format", fast(8, "AutocastTests")),
    Mutation("s8-checkpoint-working-copy", f"{S8}/NN/Checkpoint.swift",
             "SafeTensor(mixedPrecision?.master(of: p) ?? p.storage", "SafeTensor(p.storage",
             "a checkpoint saves the bf16 working copy instead of the masters", fast(8, "MixedPrecisionTests")),
    # --- Shared/Support ---
    Mutation("sup-safetensors-dtype-size", "Shared/Support/Safetensors.swift",
             "case .f32: 4\n", "case .f32: 8\n",
             "the safetensors reader's F32 element size is 8", "SharedTests\\.SafetensorsTests"),
    Mutation("sup-uniform", "Shared/Support/Random.swift",
             "    low + (high - low) * unit()\n", "    low + high * unit()\n",
             "uniform(low, high) draws from [low, low + high)", "SharedTests\\.RandomTests|" + fast(1, "EngineTests")),
]


def run(command, cwd, timeout=None):
    """(exit status, output); status None on a time-out."""
    try:
        done = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", timeout=timeout)
        return done.returncode, done.stdout
    except subprocess.TimeoutExpired as expired:
        out = expired.stdout or ""
        return None, out if isinstance(out, str) else out.decode(errors="replace")


def occurrences(mutation, root):
    path = os.path.join(root, mutation.path)
    if not os.path.exists(path):
        return -1
    with open(path, encoding="utf-8") as f:
        return f.read().count(mutation.find)


def check(mutations):
    problems = []
    ids = [m.id for m in MUTATIONS]
    for duplicate in sorted({i for i in ids if ids.count(i) > 1}):
        problems.append(f"{duplicate}: the id is used twice")
    for m in mutations:
        n = occurrences(m, ROOT)
        if n == -1:
            problems.append(f"{m.id}: {m.path} does not exist")
        elif n != 1:
            problems.append(f"{m.id}: the pattern occurs {n} times in {m.path}, not once")
        elif m.find == m.replace:
            problems.append(f"{m.id}: the replacement is the pattern itself")
    for p in problems:
        print(p)
    print(f"{len(mutations) - len(problems)} of {len(mutations)} patterns match exactly once")
    return not problems


def sync(source, target):
    """Makes `target` a copy of the checkout at `source` (without .build and .git), rewriting only the files that
    differ, so that an unchanged file keeps its time stamp and the kept .build does not recompile it."""
    skip = {".build", ".git", ".swiftpm"}
    wanted = set()
    for folder, subfolders, files in os.walk(source):
        subfolders[:] = [d for d in subfolders if d not in skip and not d.startswith(".build")]
        relative = os.path.relpath(folder, source)
        os.makedirs(os.path.join(target, relative), exist_ok=True)
        for name in files:
            path = os.path.normpath(os.path.join(relative, name))
            wanted.add(path)
            with open(os.path.join(source, path), "rb") as f:
                data = f.read()
            copy = os.path.join(target, path)
            if os.path.exists(copy):
                with open(copy, "rb") as f:
                    if f.read() == data:
                        continue
            with open(copy, "wb") as f:
                f.write(data)
            shutil.copymode(os.path.join(source, path), copy)
    for folder, subfolders, files in os.walk(target):
        subfolders[:] = [d for d in subfolders if d not in skip and not d.startswith(".build")]
        relative = os.path.relpath(folder, target)
        for name in files:
            path = os.path.normpath(os.path.join(relative, name))
            if path not in wanted:
                os.remove(os.path.join(target, path))


def failing_tests(output):
    names = re.findall(r"✘ Test (\S+?)\(", output)
    return list(dict.fromkeys(names))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="print the mutations and exit")
    parser.add_argument("--check", action="store_true", help="check that every pattern matches exactly once")
    parser.add_argument("--only", default="", help="comma-separated ids to run")
    args = parser.parse_args()

    mutations = MUTATIONS
    if args.only:
        wanted = [i.strip() for i in args.only.split(",") if i.strip()]
        unknown = [i for i in wanted if i not in {m.id for m in MUTATIONS}]
        if unknown:
            print("unknown mutation ids: " + ", ".join(unknown), file=sys.stderr)
            return 2
        mutations = [m for m in MUTATIONS if m.id in wanted]
    if args.list:
        for m in mutations:
            checked = m.tests + (f" + stage{m.gradcheck} gradcheck" if m.gradcheck else "")
            print(f"{m.id:32} {m.path}\n{'':32} {m.why}; checked by {checked}")
        print(f"{len(mutations)} mutations")
        return 0
    if args.check:
        return 0 if check(mutations) else 1
    if not check(mutations):
        return 1

    sync(ROOT, SOURCE)
    print(f"scratch copy: {SOURCE} (its .build is kept between runs)")
    started = time.time()
    print("building the unmutated copy ...", flush=True)
    status, out = run(["swift", "build", "--build-tests"], SOURCE)
    if status != 0:
        print(out[-4000:], file=sys.stderr)
        print("the unmutated copy does not build", file=sys.stderr)
        return 1

    killed, survivors, errors = 0, [], []
    for number, m in enumerate(mutations, 1):
        path = os.path.join(SOURCE, m.path)
        with open(path, encoding="utf-8") as f:
            original = f.read()
        clock = time.time()
        with open(path, "w", encoding="utf-8") as f:
            f.write(original.replace(m.find, m.replace, 1))
        try:
            verdict = None
            status, out = run(["swift", "build", "--build-tests"], SOURCE, TIMEOUT)
            if status != 0:
                verdict = "error: the mutant does not compile"
                errors.append(m.id)
                tail = [line for line in out.splitlines() if "error:" in line][:2]
                verdict += "".join("\n      " + line for line in tail)
            if verdict is None:
                status, out = run(["swift", "test", "--disable-xctest", "--skip-build", "--filter", m.tests], SOURCE,
                                  TIMEOUT)
                if status is None:
                    verdict = "killed (the tests timed out)"
                elif status == 0 and re.search(r"Test run with 0 tests", out):
                    verdict = "error: the filter matches no test"
                    errors.append(m.id)
                elif status != 0:
                    names = failing_tests(out)
                    verdict = "killed by " + (", ".join(names[:3]) if names else "a crash of the test process")
            if verdict is None and m.gradcheck:
                binary = os.path.join(SOURCE, ".build", "debug", f"stage{m.gradcheck}")
                status, out = run([binary, "gradcheck"], SOURCE, TIMEOUT)
                if status != 0:
                    failed = [line.split()[0] for line in out.splitlines() if line.endswith("FAIL")]
                    verdict = f"killed by stage{m.gradcheck} gradcheck" + (f" ({', '.join(failed[:3])})" if failed else "")
            if verdict is None:
                verdict = "SURVIVED"
                survivors.append(m.id)
            elif verdict.startswith("killed"):
                killed += 1
        finally:
            with open(path, "w", encoding="utf-8") as f:
                f.write(original)
        print(f"[{number:2}/{len(mutations)}] {m.id:32} {verdict}  ({time.time() - clock:.0f} s)", flush=True)

    minutes = (time.time() - started) / 60
    if survivors:
        print("survived: " + ", ".join(survivors))
    if errors:
        print("do not compile (fix these mutations): " + ", ".join(errors))
    print(f"{killed} of {len(mutations)} mutations killed ({minutes:.1f} min)")
    return 0 if killed == len(mutations) else 1


if __name__ == "__main__":
    sys.exit(main())
