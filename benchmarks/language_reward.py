"""Language-consistency reward throughput on real reasoning text.

Usage: python benchmarks/language_reward.py [--data_dir ../shared/data] [--n 500] [--workers 0,2]

Texts: GSM8K test answers and MATH-500 solutions (English worked solutions), plus the same texts with every third
sentence replaced by a French one (mixed). Two measurements, with the load average printed next to every figure
(the machine may be shared: compare figures from one run, not across runs):

1. `language_share` alone, per set: texts/s and words/s (script per word, py3langid per clause; the caches are
   cleared before each timing), and the ratio to `script_word_counts` alone (the script-level pass every call makes).
2. The reward as GRPO calls it: a `RewardSystem({'language': 1})` scoring batches of `--group_size` completions per
   GSM8K question (target 'auto': the question's language is detected), inline (`num_workers=0`) and in the reward
   pool with N worker processes: completions/s, words/s, and the CPU time the calling (trainer) process spends per
   completion, which is what the pool frees for device work. Every timed batch is new to every process (no cache
   hits from a warm-up); the completions of a group are different solutions, so clause caches do not help (a lower
   bound: real groups repeat clauses).
"""
import argparse
import json
import os
import time
from pathlib import Path

from r1jax.rewards import build_reward_system
from r1jax.rewards import language as rlang

FRENCH = "Ensuite on additionne les deux nombres pour obtenir le résultat final."


def _load(path, field, n):
  with open(path) as f:
    return [json.loads(line)[field] for line in f if line.strip()][:n]


def _mix(text):
  parts = text.split('. ')
  return '. '.join(FRENCH if i % 3 == 2 else p for i, p in enumerate(parts))


def _time(fn, texts):
  t0 = time.perf_counter()
  for t in texts:
    fn(t)
  return time.perf_counter() - t0


def _clear_caches():
  for name in ('identify', 'detect_language', '_word_languages'):
    fn = getattr(rlang, name, None)
    if hasattr(fn, 'cache_clear'):
      fn.cache_clear()


def _words(texts):
  return sum(sum(rlang.script_word_counts(t).values()) for t in texts)


def _grpo_batches(texts, questions, group_size, num_batches):
  """num_batches batches of len(questions) // num_batches groups; completion j of group i is text i*G+j."""
  per = len(questions) // num_batches
  out = []
  for b in range(num_batches):
    qs, comps = [], []
    for i in range(b * per, (b + 1) * per):
      for j in range(group_size):
        qs.append(questions[i])
        comps.append(f'<think>{texts[(i * group_size + j) % len(texts)]}</think><answer>1</answer>')
    out.append((comps, qs))
  return out


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--data_dir', default=str(Path(__file__).resolve().parents[2] / 'shared' / 'data'))
  ap.add_argument('--n', type=int, default=500)
  ap.add_argument('--workers', default='0,2', help='reward-pool sizes to time (0 = inline)')
  ap.add_argument('--group_size', type=int, default=8)
  args = ap.parse_args()
  d = Path(args.data_dir)
  texts = (_load(d / 'gsm8k' / 'test.jsonl', 'answer', args.n) +
           _load(d / 'math500' / 'test.jsonl', 'solution', args.n))
  rlang.language_share('warm up the model', 'en')   # loads py3langid once (~1.5 s), as a process does
  print('1. language_share')
  for name, batch in (('english', texts), ('mixed', [_mix(t) for t in texts])):
    words = _words(batch)
    _clear_caches()
    t_lang = _time(lambda t: rlang.language_share(t, 'en'), batch)
    t_script = _time(rlang.script_word_counts, batch)
    print(f'  {name:8s} {len(batch)} texts, {words} words: {len(batch) / t_lang:8.0f} texts/s '
          f'{words / t_lang:9.0f} words/s; {t_lang / t_script:5.1f}x the script-only count; '
          f'load average {os.getloadavg()[0]:.1f}')

  print(f'2. RewardSystem language reward, GRPO batches (group size {args.group_size}, target auto)')
  questions = _load(d / 'gsm8k' / 'test.jsonl', 'question', 10 ** 6)
  pool_texts = list(dict.fromkeys(texts + [_mix(t) for t in texts]))   # a short text mixes to itself: drop repeats
  groups = len(pool_texts) // args.group_size
  warm_comps, warm_qs = _grpo_batches(pool_texts, questions[:groups], args.group_size, 4)[0]
  for workers in [int(w) for w in args.workers.split(',')]:
    system = build_reward_system({'weights': {'language': 1.0}, 'num_workers': workers})
    pooled = system.pool is not None
    batches = _grpo_batches(pool_texts, questions[groups:2 * groups], args.group_size, 4)
    if pooled:   # worker start-up (spawn, imports, py3langid) happens once per training run, not per step
      system.pool.wait_ready()
    system.score(warm_comps, {'question': warm_qs})    # workers load py3langid before the clock starts
    _clear_caches()
    words = sum(_words(c) for c, _ in batches)
    t0, c0 = time.perf_counter(), time.process_time()
    for comps, qs in batches:
      system.score(comps, {'question': qs})
    dt, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = sum(len(c) for c, _ in batches)
    print(f'  num_workers={workers} ({"pool" if pooled else "inline"}): {n} completions, {words} words: '
          f'{n / dt:8.0f} completions/s {words / dt:9.0f} words/s; trainer-process CPU {1e3 * cpu / n:.2f} ms per '
          f'completion; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores')
    system.close()


if __name__ == '__main__':
  main()
