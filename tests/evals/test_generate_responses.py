"""generate_responses: a teacher answers general prompts, with or without a CoT per row; filters; resume."""
import json

from r1jax.evals import generate_responses as gr
from r1jax.evals import rejection_sampling as rs

RECORDS = [
    {'id': 'hi', 'question': 'hello'},                                            # short: no CoT
    {'id': 'cats', 'question': 'Tell me something nice about cats.'},             # CoT
    {'id': 'plain', 'question': 'Write one line about the sea.', 'cot': False},   # the row says no CoT
    {'id': 'mixed', 'question': 'Tell me about the rain please.'},                # sample 0 mixes languages
    {'id': 'none', 'question': 'Say nothing useful at all.'},                     # no usable sample
]


def responder(prompt, s):
  if 'hello' in prompt:
    return '<think>\nThe user greets me.\n</think>\nHello! How can I help?'
  if 'cats' in prompt:
    return '<think>\nCats are small and calm animals.\n</think>\nCats are calm and like to sleep.'
  if 'sea' in prompt:
    return '<think>\nThe sea is large and salty.\n</think>\nThe sea is wide and deep.'
  if 'rain' in prompt:
    return ['<think>\n雨是从云中落下的水 water\n</think>\nRain is water.',
            '<think>\nRain falls from the clouds above.\n</think>\nRain is water from clouds.'][s]
  return 'no think tags here'


def _read(path):
  return [json.loads(l) for l in path.read_text().splitlines()]


OPTS = gr.ResponseOptions(num_samples=2, batch_size=2, chunk_size=2, max_prompt_len=64, max_new_tokens=128)


def test_cot_choice_filters_and_provenance(tok, scripted, tmp_path):
  totals = gr.generate_responses(sampler=scripted(responder), params=None, tokenizer=tok, template='r1_cold_start',
                                 records=RECORDS, out_dir=tmp_path, options=OPTS, source_checkpoint='/teacher')
  assert totals['complete'] and totals['num_examples'] == 4
  assert totals['with_cot'] == 2 and totals['without_cot'] == 2
  assert totals['dropped'] == {'language': 1, 'no_summary': 2}
  rows = {r['id']: r for r in _read(tmp_path / rs.SFT_FILE)}
  assert rows['hi']['completion'] == 'Hello! How can I help?' and rows['hi']['cot'] is False
  assert rows['cats']['completion'] == ('<think>\nCats are small and calm animals.\n</think>\n'
                                        'Cats are calm and like to sleep.')
  assert rows['plain']['completion'] == 'The sea is wide and deep.'
  assert rows['mixed']['sample_index'] == 1 and 'clouds above' in rows['mixed']['completion']
  assert rows['cats']['prompt'] == 'User: Tell me something nice about cats.\nAssistant:'
  assert rows['cats']['source_checkpoint'] == '/teacher' and 'none' not in rows
  reports = _read(tmp_path / gr.RESPONSES_FILE)
  assert [(r['id'], r['kept'], r['reason']) for r in reports][-1] == ('none', False, 'no_summary')


def test_resume_equals_an_uninterrupted_run(tok, scripted, tmp_path):
  kw = dict(params=None, tokenizer=tok, template='r1_cold_start', records=RECORDS, options=OPTS)
  gr.generate_responses(sampler=scripted(responder), out_dir=tmp_path / 'a', **kw)
  first = gr.generate_responses(sampler=scripted(responder), out_dir=tmp_path / 'b', max_chunks=1, **kw)
  assert not first['complete'] and first['prompts_done'] == 2
  with open(tmp_path / 'b' / rs.SFT_FILE, 'a') as f:
    f.write('{"torn": ')                          # a crash in the middle of the next chunk's append
  sampler = scripted(responder)
  second = gr.generate_responses(sampler=sampler, out_dir=tmp_path / 'b', **kw)
  assert second["complete"] and len(set(sampler.prompts_seen)) == 3   # only the unfinished prompts
  for name in (rs.SFT_FILE, gr.RESPONSES_FILE):
    assert (tmp_path / 'a' / name).read_text() == (tmp_path / 'b' / name).read_text()


def test_stage_on_tiny_workdir_with_real_sampler(tok, tiny_policy, tmp_path):
  """`r1jax.run` -> the teacher workdir on the 8-device mesh -> files (a random teacher: few rows survive)."""
  from evals_testlib import load_config, save_tiny_workdir
  from r1jax import run as run_lib
  cfg, _, params, _, _ = tiny_policy
  src = save_tiny_workdir(tmp_path / 'teacher', cfg, params, tok)
  prompts = tmp_path / 'prompts.jsonl'
  prompts.write_text('\n'.join(json.dumps({'question': r['question']}) for r in RECORDS))
  config = load_config('generate_responses', f'tiny,prompts={prompts}')
  config.init_from = str(src)
  config.responses.update(num_samples=2, max_new_tokens=8, batch_size=2, chunk_size=2)
  totals = run_lib.run(config, tmp_path / 'out')
  assert totals['complete'] and totals['prompts_done'] == 5
  assert len(_read(tmp_path / 'out' / gr.RESPONSES_FILE)) == 5
  summary = json.loads((tmp_path / 'out' / rs.SUMMARY_FILE).read_text())
  assert summary['source_checkpoint'] == str(src) and summary['options']['filters']['max_code_blocks'] == 0
