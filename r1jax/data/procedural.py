"""Procedural tasks that need no download: Countdown (as in TinyZero) and multi-step arithmetic.

Generators are deterministic in (seed, index). Each problem is assigned to 'train' or 'test' by a
hash of its content (not of the seed), so the splits are disjoint for any seeds: a test problem
never appears in train. Records follow the schema of `r1jax.data.tasks`:

  countdown:  {'id', 'question', 'answer': reference equation, 'task': 'countdown',
               'numbers': [int], 'target': int, 'solution_steps': [str]}
  arithmetic: {'id', 'question', 'answer': str(int), 'task': 'arithmetic', 'expression': str,
               'solution_steps': [str]}

`make_sft_corpus` renders worked solutions in the R1 format (`<think> ... </think> <answer> ...
</answer>`) with a configurable error rate, to give a tiny base model a weak starting ability.
The answer checkers live in `r1jax.rewards`.
"""
from __future__ import annotations

import hashlib
from fractions import Fraction
from typing import Any, Sequence

import numpy as np

Node = Any  # int leaf, or (op, left, right)
OPS_PREC = {'+': 1, '-': 1, '*': 2, '/': 2}
SPLITS = ('train', 'test')


def _apply(op: str, a: Fraction, b: Fraction) -> Fraction | None:
  if op == '+':
    return a + b
  if op == '-':
    return a - b
  if op == '*':
    return a * b
  if b == 0:
    return None
  return a / b


def evaluate(node: Node) -> Fraction | None:
  """Exact value of an expression tree (None on division by zero)."""
  if not isinstance(node, tuple):
    return Fraction(node)
  op, left, right = node
  a, b = evaluate(left), evaluate(right)
  if a is None or b is None:
    return None
  return _apply(op, a, b)


def to_string(node: Node, parent_prec: int = 0, right_child: bool = False) -> str:
  """Infix text with the parentheses precedence requires (`(3 + 4) * 2 - 5`)."""
  if not isinstance(node, tuple):
    return str(node) if node >= 0 else f'({node})'
  op, left, right = node
  prec = OPS_PREC[op]
  text = f'{to_string(left, prec)} {op} {to_string(right, prec, True)}'
  if prec < parent_prec or (right_child and prec == parent_prec):
    return f'({text})'
  return text


def _fmt(x: Fraction) -> str:
  return str(x.numerator) if x.denominator == 1 else f'{x.numerator}/{x.denominator}'


def worked_steps(node: Node, perturb: tuple[int, int] | None = None
                 ) -> list[tuple[Fraction, str, Fraction, Fraction]]:
  """Post-order steps of `node` as (left value, op, right value, result).

  `perturb=(k, delta)` adds `delta` to the result of step k and carries the error forward
  (a plausible arithmetic slip for the SFT corpus).
  """
  out: list[tuple[Fraction, str, Fraction, Fraction]] = []

  def go(n):
    if not isinstance(n, tuple):
      return Fraction(n)
    op, left, right = n
    a, b = go(left), go(right)
    value = _apply(op, a, b)
    value = Fraction(0) if value is None else value
    if perturb is not None and len(out) == perturb[0]:
      value += perturb[1]
    out.append((a, op, b, value))
    return value

  go(node)
  return out


def _value(node: Node, worked: list[tuple[Fraction, str, Fraction, Fraction]]) -> Fraction:
  """The final value of `node` given its `worked_steps`."""
  return worked[-1][3] if worked else Fraction(node)


def _step_text(a: Fraction, op: str, b: Fraction, value: Fraction) -> str:
  return f'{_fmt(a)} {op} {_fmt(b)} = {_fmt(value)}'


def steps(node: Node, perturb: tuple[int, int] | None = None) -> tuple[list[str], Fraction]:
  """Post-order worked steps ('3 + 4 = 7') and the final value (`worked_steps`, as text)."""
  worked = worked_steps(node, perturb)
  return [_step_text(*w) for w in worked], _value(node, worked)


def _inorder(node: Node) -> tuple[list[int], list[str]]:
  """Leaves and operators in reading order (parentheses dropped)."""
  if not isinstance(node, tuple):
    return [node], []
  op, left, right = node
  la, oa = _inorder(left)
  lb, ob = _inorder(right)
  return la + lb, oa + [op] + ob


def left_to_right(node: Node) -> Node:
  """The tree a solver gets by ignoring precedence and parentheses: ((a o b) o c) o d.

  This is the classic systematic mistake of the `left_to_right` corpus error mode: it is
  right whenever reading order happens to agree with precedence, wrong otherwise.
  """
  leaves, ops = _inorder(node)
  tree: Node = leaves[0]
  for op, leaf in zip(ops, leaves[1:]):
    tree = (op, tree, leaf)
  return tree


def _random_tree(rng: np.random.Generator, leaves: list[int], ops: Sequence[str]) -> Node:
  if len(leaves) == 1:
    return leaves[0]
  k = int(rng.integers(1, len(leaves)))
  op = str(ops[int(rng.integers(len(ops)))])
  return (op, _random_tree(rng, leaves[:k], ops), _random_tree(rng, leaves[k:], ops))


def _clean(node: Node) -> bool:
  """All intermediate values are non-negative integers."""
  if not isinstance(node, tuple):
    return True
  v = evaluate(node)
  return (v is not None and v.denominator == 1 and v >= 0 and _clean(node[1])
          and _clean(node[2]))


def split_of(key: str, test_fraction: float) -> str:
  """'test' or 'train' from a stable hash of the problem's content."""
  h = int(hashlib.blake2b(key.encode(), digest_size=8).hexdigest(), 16)
  return 'test' if (h % 1_000_000) < test_fraction * 1_000_000 else 'train'


def _rng(seed: int, index: int, salt: int) -> np.random.Generator:
  return np.random.default_rng([salt, seed, index])


def countdown_question(numbers: Sequence[int], target: int) -> str:
  return (f'Using the numbers {list(numbers)}, create an equation that equals {target}. '
          'You can use basic arithmetic operations (+, -, *, /) and each number can only be '
          'used once.')


def countdown_example(seed: int, index: int, min_numbers: int = 3, max_numbers: int = 4,
                      max_number: int = 99, min_target: int = 1, max_target: int = 100,
                      ops: Sequence[str] = ('+', '-', '*', '/'),
                      max_tries: int = 1000) -> dict:
  """One Countdown problem with a known solution using every number exactly once."""
  rng = _rng(seed, index, 1)
  for _ in range(max_tries):
    n = int(rng.integers(min_numbers, max_numbers + 1))
    numbers = [int(x) for x in rng.integers(1, max_number + 1, size=n)]
    tree = _random_tree(rng, list(numbers), ops)
    if not _clean(tree):
      continue
    target = int(evaluate(tree))
    if not min_target <= target <= max_target:
      continue
    shown = [int(x) for x in rng.permutation(numbers)]
    return {'numbers': shown, 'target': target, 'tree': tree}
  raise RuntimeError(f'countdown_example(seed={seed}, index={index}): no valid problem in '
                     f'{max_tries} tries; widen the target range.')


def arithmetic_example(seed: int, index: int, min_ops: int = 2, max_ops: int = 4,
                       min_value: int = 1, max_value: int = 9,
                       ops: Sequence[str] = ('+', '-', '*')) -> dict:
  """One multi-step integer expression, e.g. `(3 + 4) * 2 - 5`. With '/' in ops, divisions
  are exact (retries until every intermediate value is an integer)."""
  rng = _rng(seed, index, 2)
  for _ in range(1000):
    k = int(rng.integers(min_ops, max_ops + 1))
    leaves = [int(x) for x in rng.integers(min_value, max_value + 1, size=k + 1)]
    tree = _random_tree(rng, leaves, ops)
    v = evaluate(tree)
    if v is not None and v.denominator == 1 and all(
        evaluate(t) is not None and evaluate(t).denominator == 1 for t in _subtrees(tree)):
      return {'tree': tree, 'expression': to_string(tree), 'value': int(v)}
  raise RuntimeError(f'arithmetic_example(seed={seed}, index={index}): no exact expression.')


def _subtrees(node: Node):
  if isinstance(node, tuple):
    yield node
    yield from _subtrees(node[1])
    yield from _subtrees(node[2])


def _generate(kind: str, split: str, num_examples: int, seed: int, test_fraction: float,
              **options) -> list[dict]:
  if split not in SPLITS:
    raise ValueError(f'split must be one of {SPLITS}, got {split!r}')
  if not 0 < test_fraction < 1:
    raise ValueError(f'test_fraction must be in (0, 1), got {test_fraction}')
  out, seen = [], set()
  # Give up when new distinct problems have stopped appearing (the option space is
  # exhausted), instead of drawing for ever.
  max_misses = int(2000 / min(test_fraction, 1 - test_fraction))
  index, last_new = 0, 0
  while len(out) < num_examples:
    if index - last_new > max_misses:
      raise RuntimeError(f'{kind}: only {len(out)} distinct {split} problems exist for these '
                         f'options (asked for {num_examples}); widen the generator options.')
    if kind == 'countdown':
      ex = countdown_example(seed, index, **options)
      key = f"countdown:{sorted(ex['numbers'])}:{ex['target']}"
      rec = {'question': countdown_question(ex['numbers'], ex['target']),
             'answer': to_string(ex['tree']), 'task': 'countdown',
             'numbers': ex['numbers'], 'target': ex['target']}
    else:
      ex = arithmetic_example(seed, index, **options)
      key = f"arithmetic:{ex['expression']}"
      rec = {'question': f"Compute {ex['expression']}.", 'answer': str(ex['value']),
             'task': 'arithmetic', 'expression': ex['expression']}
    index += 1
    if key in seen or split_of(key, test_fraction) != split:
      continue
    seen.add(key)
    last_new = index
    rec['id'] = f'{kind}/{split}/{seed}/{index - 1}'
    rec['solution_steps'] = steps(ex['tree'])[0]
    rec['_tree'] = ex['tree']
    out.append(rec)
  return out


def _public(recs: list[dict]) -> list[dict]:
  return [{k: v for k, v in r.items() if not k.startswith('_')} for r in recs]


def countdown_dataset(split: str = 'train', num_examples: int = 1000, seed: int = 0,
                      test_fraction: float = 0.1, **options) -> list[dict]:
  """`num_examples` distinct Countdown records of `split`. Options: see `countdown_example`."""
  return _public(_generate('countdown', split, num_examples, seed, test_fraction, **options))


def arithmetic_dataset(split: str = 'train', num_examples: int = 1000, seed: int = 0,
                       test_fraction: float = 0.1, **options) -> list[dict]:
  """`num_examples` distinct arithmetic records of `split`. Options: see `arithmetic_example`."""
  return _public(_generate('arithmetic', split, num_examples, seed, test_fraction, **options))


def _mutate_op(rng: np.random.Generator, tree: Node) -> Node:
  """Replaces one operator (chosen at random) by a different one."""
  nodes = list(_subtrees(tree))
  target = nodes[int(rng.integers(len(nodes)))]

  def go(n):
    if n is target:
      others = [o for o in '+-*' if o != n[0]]
      return (others[int(rng.integers(len(others)))], n[1], n[2])
    if isinstance(n, tuple):
      return (n[0], go(n[1]), go(n[2]))
    return n

  return go(tree)


# Worded chains of thought (`cot_style='worded'`): each step as a short phrase,
# "3 times 4 is 12, then 12 plus 5 is 17.", so that the CoT has words a language reward can
# score. The second language is Chinese: Han characters are a script of one language for
# `r1jax.rewards.language`, so a switch is identified without a statistical model.
COT_WORDS = {
    'en': {'+': 'plus', '-': 'minus', '*': 'times', '/': 'divided by', 'is': 'is', 'then': 'then'},
    'zh': {'+': '加', '-': '减', '*': '乘', '/': '除以', 'is': '得', 'then': '然后'},
}
COT_STYLES = ('symbolic', 'worded')
# The reflection the corpus writes after a wrong step (`reflect_rate`), and the phrases the
# reflection metrics look for by default (`r1jax.evals.curation.reflection_rate`).
REFLECTION = 'wait, let me check'
REFLECTION_PHRASES = ('wait', 'let me check')


def _render_step(a, op, b, value, style: str, lang: str) -> str:
  if style == 'symbolic':
    return _step_text(a, op, b, value)
  w = COT_WORDS[lang]
  return f"{_fmt(a)} {w[op]} {_fmt(b)} {w['is']} {_fmt(value)}"


def render_cot(node: Node, style: str = 'symbolic', switch_at: int | None = None,
               second_language: str = 'zh', reflect: tuple[int, int] | None = None) -> tuple[str, Fraction]:
  """The chain of thought solving `node` and its value.

  style 'symbolic': "3 * 4 = 12. 12 + 5 = 17." (the corpus's original text);
  'worded': "3 times 4 is 12, then 12 plus 5 is 17." in English, and from step `switch_at`
  on in `second_language` ("3 times 4 is 12, 然后 12 加 5 得 17.").
  `reflect=(k, delta)`: step k is first written with its result off by `delta`, then
  `REFLECTION` and the step again, right ("3 times 4 is 13, wait, let me check, 3 times 4 is 12").
  """
  if style not in COT_STYLES:
    raise ValueError(f'cot_style must be one of {COT_STYLES}, got {style!r}')
  worked, parts = worked_steps(node), []
  for k, (a, op, b, value) in enumerate(worked):
    lang = second_language if switch_at is not None and k >= switch_at else 'en'
    text = _render_step(a, op, b, value, style, lang)
    if reflect is not None and reflect[0] == k:
      wrong = _render_step(a, op, b, value + reflect[1], style, lang)
      sep = '. ' if style == 'symbolic' else ', '
      text = f'{wrong}{sep}{REFLECTION}{sep}{text}'
    if style == 'worded' and k:
      text = f"{COT_WORDS[lang]['then']} {text}"
    parts.append(text)
  value = _value(node, worked)
  if style == 'symbolic':
    return ' '.join(f'{p}.' for p in parts), value
  return (', '.join(parts) + '.' if parts else ''), value


def make_sft_corpus(task: str = 'countdown', num_examples: int = 1000, seed: int = 0,
                    split: str = 'train', error_rate: float = 0.2, template='plain',
                    test_fraction: float = 0.1, error_mode: str = 'random',
                    untagged_rate: float = 0.0, cot_style: str = 'symbolic',
                    mix_rate: float = 0.0, second_language: str = 'zh',
                    reflect_rate: float = 0.0, summary: bool = False, **options) -> list[dict]:
  """Worked solutions in the R1 format, for pretraining / SFT of a tiny base model.

  `error_mode` (arithmetic): 'random' slips one step by a small amount; 'left_to_right'
  solves the whole problem ignoring precedence and parentheses, a systematic mistake that
  is right on some problems and wrong on others, so reward can tell the strategies apart.
  `untagged_rate`: the fraction of completions that end in prose ("The answer is 7.") instead
  of `<answer> 7 </answer>`, i.e. not in the format a strict rule-based verifier reads.

  Chain-of-thought options (arithmetic with `error_mode='left_to_right'`; all off by default,
  and then the corpus is unchanged, byte for byte). Each draws from its own random stream, so
  turning one on changes neither the problems nor the other draws:
  `cot_style`: 'symbolic' ("3 * 4 = 12. 12 + 5 = 17.") or 'worded' ("3 times 4 is 12, then
    12 plus 5 is 17."), whose words the language-consistency reward scores.
  `mix_rate` (worded only): the fraction of solutions that switch to `second_language` (COT_WORDS:
    'zh') from a random step on (never the first of two or more steps); prompts stay English.
    Item field `mixed`.
  `reflect_rate`: the fraction of solutions in which one random step is first written with a
    wrong result, then "wait, let me check" and the step again, right (the final answer is as
    without it). Item field `reflected`.
  `summary`: a readable summary between the reasoning and the answer tag ("</think> The answer
    is 11. <answer> 11 </answer>"): R1's cold-start format (reasoning, then a summary for the
    reader). A fixed sentence around the reasoning's result: a summary that restated the problem
    ("3 + 4 * 2 = 11.") was too hard for the tiny models to copy (held-out pass@1 fell to 1-14%).

  Each item is the task record plus `prompt` (the question rendered by `template`), `completion`
  (`template.render_completion(reasoning, answer)`), `text` (prompt + completion) and `correct`
  (False for the fraction `error_rate` whose reasoning contains a mistake that leads to a wrong
  answer).

  Args:
    task: 'countdown' or 'arithmetic'.
    template: a template name or `Template` from `r1jax.data.templates`.
    options: generator options (see `countdown_example` / `arithmetic_example`).
  """
  from r1jax.data.templates import get_template  # pylint: disable=import-outside-toplevel
  tmpl = get_template(template)
  if error_mode not in ('random', 'left_to_right'):
    raise ValueError(f"error_mode must be 'random' or 'left_to_right', got {error_mode!r}")
  if task not in ('countdown', 'arithmetic'):
    raise ValueError(f"task must be 'countdown' or 'arithmetic', got {task!r}")
  if summary and task != 'arithmetic':
    raise ValueError(f"summary needs task='arithmetic' (got {task!r})")
  cot_opts = cot_style != 'symbolic' or mix_rate or reflect_rate
  if cot_opts:
    if task != 'arithmetic' or error_mode != 'left_to_right':
      raise ValueError("cot_style / mix_rate / reflect_rate need task='arithmetic' and "
                       f"error_mode='left_to_right' (got {task!r}, {error_mode!r})")
    if cot_style not in COT_STYLES:
      raise ValueError(f'cot_style must be one of {COT_STYLES}, got {cot_style!r}')
    if mix_rate and cot_style != 'worded':
      raise ValueError("mix_rate needs cot_style='worded' (a symbolic CoT has no words to mix)")
    if second_language not in COT_WORDS or second_language == 'en':
      raise ValueError(f'second_language must be one of {sorted(set(COT_WORDS) - {"en"})}, '
                       f'got {second_language!r}')
    for name, rate in (('mix_rate', mix_rate), ('reflect_rate', reflect_rate)):
      if not 0.0 <= rate <= 1.0:
        raise ValueError(f'{name} must be in [0, 1], got {rate}')
  recs = _generate(task, split, num_examples, seed, test_fraction, **options)
  out = []
  for i, rec in enumerate(recs):
    rng = _rng(seed, i, 3)
    tree = rec['_tree']
    wrong = bool(rng.random() < error_rate)
    extra = {}
    if cot_opts:
      solved = left_to_right(tree) if wrong else tree
      n_steps = len(worked_steps(solved))
      switch_at = reflect = None
      mix_rng, reflect_rng = _rng(seed, i, 5), _rng(seed, i, 6)
      if mix_rng.random() < mix_rate:
        switch_at = int(mix_rng.integers(1, n_steps)) if n_steps > 1 else 0
      if reflect_rng.random() < reflect_rate and n_steps:
        k = int(reflect_rng.integers(n_steps))
        d = int(reflect_rng.integers(1, 4))
        reflect = (k, -d if reflect_rng.random() < 0.5 else d)
      reasoning, value = render_cot(solved, cot_style, switch_at, second_language, reflect)
      answer = _fmt(value)
      correct = answer == rec['answer']
      extra = dict(mixed=switch_at is not None, reflected=reflect is not None)
    elif task == 'arithmetic' and error_mode == 'left_to_right':
      lines, value = steps(left_to_right(tree) if wrong else tree)
      reasoning = ' '.join(f'{line}.' for line in lines)
      answer = _fmt(value)
      correct = answer == rec['answer']
    elif task == 'arithmetic':
      perturb = None
      if wrong:
        n_steps = len(rec['solution_steps'])
        delta = int(rng.integers(1, 4)) * (1 if rng.random() < 0.5 else -1)
        perturb = (int(rng.integers(n_steps)), delta)
      lines, value = steps(tree, perturb)
      reasoning = ' '.join(f'{line}.' for line in lines)
      answer = _fmt(value)
      correct = answer == rec['answer']
    else:
      lines = []
      if rng.random() < 0.3:  # a failed first attempt, as a search would write it
        a, b = rec['numbers'][0], rec['numbers'][1]
        op = str(rng.choice(['+', '*']))
        lines.append(f"Try {a} {op} {b} = {_fmt(_apply(op, Fraction(a), Fraction(b)))}. "
                     "That does not lead anywhere.")
      final_tree = _mutate_op(rng, tree) if wrong else tree
      step_lines, value = steps(final_tree)
      lines += [f'{line}.' for line in step_lines]
      lines.append(f"So {to_string(final_tree)} = {_fmt(value)}.")
      reasoning = ' '.join(lines)
      answer = to_string(final_tree)
      correct = value == rec['target']
    prompt = tmpl.render_prompt(rec['question'])
    tagged = not (untagged_rate and _rng(seed, i, 4).random() < untagged_rate)
    if tagged:
      completion = tmpl.render_completion(reasoning=reasoning, answer=answer)
      if summary:
        head, close, tail = completion.partition(tmpl.think_close)
        completion = f"{head}{close} The answer is {answer}.{tail}"
    else:  # the answer in prose: right or wrong, a strict verifier cannot read it
      completion = f'{tmpl.think_open} {reasoning} {tmpl.think_close} The answer is {answer}.'
    item = {k: v for k, v in rec.items() if not k.startswith('_')}
    item.update(prompt=prompt, completion=completion, text=prompt + completion,
                correct=bool(correct), tagged=tagged, **extra)
    out.append(item)
  return out
