"""Rejection sampling: selection rules, filters, difficulty band, provenance, resume; cold-start
data; the stage on a real tiny workdir through the sharded sampler."""
import dataclasses
import json

import pytest

from evals_testlib import load_config, question_of, r1, save_tiny_workdir
from nolocal_path import forbid_local_io, url
from r1jax import run as run_lib
from r1jax.evals import rejection_sampling as rs
from r1jax.evals.rejection_sampling import RejectionOptions

N = 6


def _make_responder(records):
  """Scripted samples: prompt i % 3 == 0 gets nothing right, i % 3 == 1 gets five right (one of
  each filter case plus two clean ones), i % 3 == 2 gets only sample 2 right."""
  by_q = {(tuple(sorted(r['numbers'])), r['target']): (i, r['answer']) for i, r in
          enumerate(records)}

  def responder(prompt, s):
    numbers, target = question_of(prompt)
    i, ans = by_q[(tuple(sorted(numbers)), target)]
    wrong = r1('I guess.', f'{numbers[0]} + {numbers[1]}')   # never uses every number
    if i % 3 == 0 or (i % 3 == 2 and s != 2):
      return wrong
    return [wrong,
            r1('Let me think step by step, very carefully, about each number.', ans),
            r1('Easy.', ans),
            r1('这是中文的推理过程 but mixed', ans),                       # language
            r1('```python\nprint(12345 + 67890)\n```', ans),              # code block
            f'<think> ok </think> so <answer> {ans} </answer>'][s]        # format

  return responder


def _opts(**kw):
  base = dict(num_samples=N, batch_size=2, chunk_size=4, max_prompt_len=320, max_new_tokens=96, select='shortest')
  return RejectionOptions(**{**base, **kw})


def _read(path):
  return [json.loads(l) for l in path.read_text().splitlines()]


def test_selection_filters_and_provenance(tok, scripted, countdown_records, tmp_path):
  recs = countdown_records[:6]
  sampler = scripted(_make_responder(recs))
  totals = rs.rejection_sample(sampler=sampler, params=None, tokenizer=tok, template='r1_zero',
                               records=recs, out_dir=tmp_path, options=_opts(),
                               source_checkpoint='/ckpt/rl')
  assert totals['complete'] and totals['prompts_done'] == 6 and totals['chunks_done'] == 2
  rows = _read(tmp_path / rs.SFT_FILE)
  # prompts 1 and 4: the shortest clean correct sample (2); prompts 2 and 5: the only correct one.
  assert [(r['id'], r['sample_index']) for r in rows] == [
      (recs[i]['id'], 2) for i in (1, 2, 4, 5)]
  r = rows[0]
  assert r['source_checkpoint'] == '/ckpt/rl' and r['reward'] == 1.0
  assert r['pass_rate'] == pytest.approx(5 / 6)
  assert r['completion'] == r1('Easy.', recs[1]['answer'])
  assert r['prompt'].endswith(f"User: {recs[1]['question']} Assistant:")
  assert r['length'] > 0 and r['question'] == recs[1]['question']
  rates = _read(tmp_path / rs.PASS_RATES_FILE)
  assert [x['id'] for x in rates] == [x['id'] for x in recs]
  assert [x['num_correct'] for x in rates] == [0, 5, 1, 0, 5, 1]
  assert rates[1]['filtered'] == {'language': 1, 'code_blocks': 1, 'format': 1}
  assert rates[1]['num_candidates'] == 2 and rates[0]['num_kept'] == 0
  assert totals['filtered'] == {'language': 2, 'code_blocks': 2, 'format': 2}
  assert totals['num_examples'] == 4 and totals['num_samples'] == 36
  summary = json.loads((tmp_path / rs.SUMMARY_FILE).read_text())
  assert summary['totals']['num_examples'] == 4


def test_first_rule_max_per_prompt_and_band(tok, scripted, countdown_records, tmp_path):
  recs = countdown_records[:6]
  opts = _opts(select='first', max_per_prompt=2, pass_rate_min=0.5, pass_rate_max=1.0)
  rs.rejection_sample(sampler=scripted(_make_responder(recs)), params=None, tokenizer=tok,
                      template='r1_zero', records=recs, out_dir=tmp_path, options=opts)
  rows = _read(tmp_path / rs.SFT_FILE)
  # Only prompts with pass rate in [0.5, 1] (1 and 4) contribute; the first two clean ones each.
  assert [(r['id'], r['sample_index']) for r in rows] == [
      (recs[1]['id'], 1), (recs[1]['id'], 2), (recs[4]['id'], 1), (recs[4]['id'], 2)]
  rates = _read(tmp_path / rs.PASS_RATES_FILE)
  assert [x['in_band'] for x in rates] == [False, True, False, False, True, False]


def test_filters_unit():
  from r1jax.data.templates import get_template
  t = get_template('r1_zero')
  opts = RejectionOptions(max_completion_tokens=50, max_code_blocks=0)
  ok = {'text': r1('3 + 4 = 7. 7 * 2 = 14.', '(3 + 4) * 2'), 'length': 20, 'finish_reason': 0}
  assert rs.reject_reason(ok, t, opts) is None           # numbers-only CoT is not "mixed"
  assert rs.reject_reason({**ok, 'finish_reason': 1}, t, opts) == 'truncated'
  assert rs.reject_reason({**ok, 'length': 51}, t, opts) == 'too_long'
  code = {**ok, 'text': r1('x ```y``` z', '1')}
  assert rs.reject_reason(code, t, opts) == 'code_blocks'   # any block with max_code_blocks=0
  assert rs.code_stats('a ```b``` c ```d') == (2, pytest.approx(11 / 16))
  assert rs.split_reasoning(r1('why', '42'), t) == ('why', '42')
  assert rs.mixed_language('Это русский text', 'en', 0.9)
  assert RejectionOptions().select == 'random' and RejectionOptions().max_code_blocks == 0
  para = {**ok, 'text': r1('We add the numbers one by one here.\n\nThen we check it.', '1')}
  assert rs.reject_reason(para, t, opts) is None
  assert rs.reject_reason(para, t, dataclasses.replace(opts, max_paragraph_words=5)) == 'paragraph'
  french = {**ok, 'text': r1("On additionne d'abord les deux nombres entre eux.", '1')}
  assert rs.reject_reason(french, t, opts, target='fr') is None
  assert rs.reject_reason(french, t, opts, target='en') == 'language'
  # A readable summary before <answer> fails the strict R1-Zero format unless allowed.
  summary = {**ok, 'text': '<think> 4 * 2 = 8. </think> 4 * 2 = 8. <answer> 8 </answer>'}
  assert rs.reject_reason(summary, t, opts) == 'format'
  assert rs.reject_reason(summary, t, dataclasses.replace(opts, allow_summary=True)) is None


def test_random_rule_is_per_prompt_deterministic(tok, scripted, countdown_records, tmp_path):
  """The default `random` rule: a choice among the clean correct samples that repeats across runs."""
  recs = countdown_records[:6]
  runs = []
  for seed, out in ((0, 'a'), (0, 'b'), (1, 'c')):
    rs.rejection_sample(sampler=scripted(_make_responder(recs)), params=None, tokenizer=tok,
                        template='r1_zero', records=recs, out_dir=tmp_path / out,
                        options=_opts(select='random', seed=seed))
    runs.append([(r['id'], r['sample_index']) for r in _read(tmp_path / out / rs.SFT_FILE)])
  assert runs[0] == runs[1]
  assert {s for _, s in runs[0]} <= {1, 2}
  all_rows = rs.rejection_sample(sampler=scripted(_make_responder(recs)), params=None, tokenizer=tok,
                                 template='r1_zero', records=recs, out_dir=tmp_path / 'all',
                                 options=_opts(select='all'))
  assert all_rows['num_examples'] == 6   # prompts 1 and 4: both clean samples; 2 and 5: one


def _resume_kwargs(tok, recs, out):
  return dict(params=None, tokenizer=tok, template='r1_zero', records=recs, out_dir=out,
              options=_opts(chunk_size=4, batch_size=2), source_checkpoint='ck')


@pytest.mark.parametrize('remote', [False, True], ids=['local', 'remote'])
def test_resume_loses_nothing_and_repeats_nothing(tok, scripted, countdown_records, tmp_path,
                                                  monkeypatch, remote):
  """`remote`: the output dir is a URL with no local file name (tests/nolocal_path.py), so the
  appends, the cut back to the marker's sizes and the atomic marker go through epath."""
  recs = countdown_records[:10]   # chunks of 4, 4, 2 prompts
  responder = _make_responder(recs)
  ref = scripted(responder)
  rs.rejection_sample(sampler=ref, **_resume_kwargs(tok, recs, tmp_path / 'ref'))

  out = tmp_path / 'resumed'
  out_dir = url(out) if remote else out   # the test itself reads and damages `out` locally
  if remote:
    forbid_local_io(monkeypatch)
  first = scripted(responder)

  def crash(chunk, totals):
    if chunk == 0:
      raise KeyboardInterrupt('preempted')

  with pytest.raises(KeyboardInterrupt):
    rs.rejection_sample(sampler=first, on_chunk_done=crash, **_resume_kwargs(tok, recs, out_dir))
  progress = json.loads((out / rs.PROGRESS_FILE).read_text())
  assert progress['totals']['prompts_done'] == 4
  # A crash while appending the next chunk leaves a partial line behind: it must be cut away.
  with open(out / rs.SFT_FILE, 'a') as f:
    f.write('{"prompt": "half a li')
  second = scripted(responder)
  partial = rs.rejection_sample(sampler=second, max_chunks=1, **_resume_kwargs(tok, recs, out_dir))
  assert not partial['complete'] and partial['prompts_done'] == 8
  third = scripted(responder)
  totals = rs.rejection_sample(sampler=third, **_resume_kwargs(tok, recs, out_dir))
  assert totals['complete'] and totals['prompts_done'] == 10

  seen = first.prompts_seen + second.prompts_seen + third.prompts_seen
  assert len(seen) == len(set(seen)) == 10          # every prompt sampled exactly once
  assert sorted(seen) == sorted(ref.prompts_seen)
  for name in (rs.SFT_FILE, rs.PASS_RATES_FILE, rs.SUMMARY_FILE):
    assert (out / name).read_text() == (tmp_path / 'ref' / name).read_text(), name
  # Nothing left to do: a rerun samples nothing.
  again = scripted(responder)
  rs.rejection_sample(sampler=again, **_resume_kwargs(tok, recs, out_dir))
  assert again.prompts_seen == []
  # Another configuration must not append to this output.
  kw = _resume_kwargs(tok, recs, out_dir)
  kw['options'] = dataclasses.replace(kw['options'], temperature=1.0)
  with pytest.raises(ValueError, match='different configuration'):
    rs.rejection_sample(sampler=again, **kw)


def test_cold_start_format(tok, scripted, countdown_records, tmp_path):
  recs = countdown_records[:3]
  base = _make_responder(recs)

  def responder(prompt, s):
    if s == 0:   # correct, but nothing after </think>: no summary
      numbers, target = question_of(prompt)
      ans = next(r['answer'] for r in recs if r['target'] == target)
      return f'<think> so \\boxed{{{ans}}} </think>'
    return base(prompt, s)

  totals = rs.build_cold_start_data(
      sampler=scripted(responder), params=None, tokenizer=tok, records=recs, out_dir=tmp_path,
      source_template='r1_zero', output_template='r1_cold_start',
      options=_opts(require_format=False, summary_format='The answer is {summary}.'))
  rows = _read(tmp_path / rs.SFT_FILE)
  assert [(r['id'], r['sample_index']) for r in rows] == [(recs[1]['id'], 2), (recs[2]['id'], 2)]
  assert rows[0]['completion'] == f"<think>\nEasy.\n</think>\nThe answer is {recs[1]['answer']}."
  assert rows[0]['prompt'] == f"User: {recs[1]['question']}\nAssistant:"
  rates = _read(tmp_path / rs.PASS_RATES_FILE)
  assert rates[1]['filtered']['no_summary'] == 1
  assert totals['filtered']['language'] == 1


def test_stage_on_tiny_workdir_with_real_sampler(tok, tiny_policy, tmp_path):
  """`r1jax.run` dispatch -> load the workdir -> the sharded sampler on the 8-device mesh."""
  cfg, _, params, _, _ = tiny_policy
  src = save_tiny_workdir(tmp_path / 'rl', cfg, params, tok)
  config = load_config('rejection_sampling', 'tiny')
  config.init_from = str(src)
  config.rejection.tasks = [dict(name='countdown', split='train', num_examples=5)]
  config.rejection.update(num_samples=2, max_new_tokens=8, batch_size=2, chunk_size=2)
  out = tmp_path / 'rs'
  totals = run_lib.run(config, out)
  assert totals['complete'] and totals['prompts_done'] == 5 and totals['num_samples'] == 10
  rates = _read(out / rs.PASS_RATES_FILE)
  assert len(rates) == 5 and len({r['id'] for r in rates}) == 5
  assert all(r['num_samples'] == 2 for r in rates)
  assert (out / rs.SFT_FILE).exists()
  summary = json.loads((out / rs.SUMMARY_FILE).read_text())
  assert summary['source_checkpoint'] == str(src)
