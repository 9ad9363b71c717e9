"""Language-consistency reward throughput on real reasoning text, next to a script-only count of the same text.

Usage: python benchmarks/language_reward.py [--data_dir ../shared/data] [--n 500]

Texts: GSM8K test answers and MATH-500 solutions (English worked solutions), plus the same texts with every third
sentence replaced by a French one (mixed). Reported per set: texts/s and words/s of `language_share` (script per word,
py3langid per clause; the clause cache is cleared before each timing), and the ratio to `script_word_counts` alone
(the script-level pass every call makes anyway), with the load average printed next to the figures.
"""
import argparse
import json
import os
import time
from pathlib import Path

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


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument('--data_dir', default=str(Path(__file__).resolve().parents[2] / 'shared' / 'data'))
  ap.add_argument('--n', type=int, default=500)
  args = ap.parse_args()
  d = Path(args.data_dir)
  texts = (_load(d / 'gsm8k' / 'test.jsonl', 'answer', args.n) +
           _load(d / 'math500' / 'test.jsonl', 'solution', args.n))
  rlang.language_share('warm up the model', 'en')   # loads py3langid once (~1.5 s), as a process does
  for name, batch in (('english', texts), ('mixed', [_mix(t) for t in texts])):
    words = sum(sum(rlang.script_word_counts(t).values()) for t in batch)
    rlang.identify.cache_clear()
    t_lang = _time(lambda t: rlang.language_share(t, 'en'), batch)
    t_script = _time(rlang.script_word_counts, batch)
    print(f'{name:8s} {len(batch)} texts, {words} words: {len(batch) / t_lang:8.0f} texts/s '
          f'{words / t_lang:9.0f} words/s; {t_lang / t_script:5.1f}x the script-only count; '
          f'load average {os.getloadavg()[0]:.1f}')


if __name__ == '__main__':
  main()
