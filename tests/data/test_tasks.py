"""Task loaders on the real data in ../shared/data, and the generic JSONL loader."""
import json

import ml_collections
import pytest

from r1jax.data import tasks
from r1jax.data.tasks import load_task

DATA = tasks.default_data_dir()
needs_data = pytest.mark.skipif(not (DATA / 'gsm8k').exists(), reason=f'no data at {DATA}')
SCHEMA = {'id', 'question', 'answer', 'task'}


@needs_data
@pytest.mark.parametrize('name,split,count,task', [
    ('gsm8k', 'train', 7473, 'math'), ('gsm8k', 'test', 1319, 'math'),
    ('math500', 'test', 500, 'math'), ('aime24', 'test', 30, 'math'),
    ('amc23', 'test', 40, 'math'), ('humaneval', 'test', 164, 'code')])
def test_real_counts_and_schema(name, split, count, task):
  recs = load_task(ml_collections.ConfigDict({'name': name, 'split': split}))
  assert len(recs) == count
  assert len({r['id'] for r in recs}) == count
  for r in recs:
    assert SCHEMA <= set(r) and r['task'] == task
    assert isinstance(r['question'], str) and r['question']
    assert isinstance(r['answer'], str) and r['answer']


@needs_data
def test_gsm8k_gold():
  recs = tasks.load_gsm8k(split='train')
  assert recs[0]['answer'] == '72' and recs[1]['answer'] == '10'
  assert recs[0]['solution'].endswith('#### 72')
  assert recs[0]['question'].startswith('Natalia sold clips')
  assert all(',' not in r['answer'] for r in recs)
  assert all(r['answer'].lstrip('-').replace('.', '', 1).isdigit() for r in recs)
  # '1,080' in the raw data becomes '1080'.
  raw = [json.loads(line) for line in open(DATA / 'gsm8k' / 'train.jsonl')]
  i = next(i for i, row in enumerate(raw) if row['answer'].endswith('#### 1,080'))
  assert recs[i]['answer'] == '1080'


@needs_data
def test_competition_gold():
  amc = tasks.load_amc23()
  assert amc[0]['answer'] == '27' and amc[0]['id'] == 'amc23/0'
  assert all('.' not in r['answer'] for r in amc)
  aime = tasks.load_aime24()
  assert aime[0]['answer'] == '204'
  assert all(0 <= int(r['answer']) <= 999 for r in aime)
  assert '025' not in [r['answer'] for r in aime] and '25' in [r['answer'] for r in aime]
  m = tasks.load_math500()
  assert m[0]['answer'] == '\\left( 3, \\frac{\\pi}{2} \\right)'
  assert m[0]['id'] == m[0]['unique_id'] and m[0]['id'].startswith('test/')
  assert {'solution', 'subject', 'level'} <= set(m[0])


@needs_data
def test_humaneval_fields():
  he = tasks.load_humaneval()
  r = he[0]
  assert r['id'] == 'HumanEval/0' and r['entry_point'] == 'has_close_elements'
  assert 'def check(candidate)' in r['tests']
  assert r['prompt'] in r['question'] and r['prompt'].startswith('from typing import List')
  assert r['answer'].strip().startswith('for idx')


@needs_data
def test_load_task_options(monkeypatch, tmp_path):
  cfg = ml_collections.ConfigDict({'name': 'gsm8k', 'split': 'test', 'max_examples': 5})
  assert len(load_task(cfg)) == 5
  assert len(load_task({'name': 'gsm8k', 'data_dir': str(DATA)})) == 7473  # default train
  monkeypatch.setenv('R1JAX_DATA_DIR', str(tmp_path))
  with pytest.raises(FileNotFoundError, match='R1JAX_DATA_DIR'):
    load_task({'name': 'aime24'})


def test_generic_jsonl(tmp_path):
  path = tmp_path / 'qa.jsonl'
  rows = [{'q': 'What is 2+2?', 'a': 4, 'uid': 'x1', 'extra': 1},
          {'q': 'Boxed?', 'a': 'so \\boxed{\\frac{1}{2}}', 'uid': 'x2', 'extra': 2}]
  path.write_text('\n'.join(json.dumps(r) for r in rows) + '\n\n')
  cfg = ml_collections.ConfigDict({'name': 'jsonl', 'path': str(path), 'question_field': 'q',
                                   'answer_field': 'a', 'id_field': 'uid', 'task': 'math',
                                   'answer_parser': 'none', 'question_format': '{question}'})
  recs = load_task(cfg)
  assert recs[0] == {'id': 'x1', 'question': 'What is 2+2?', 'answer': '4', 'task': 'math',
                     'uid': 'x1', 'extra': 1}
  cfg.answer_parser = 'boxed'
  assert load_task(cfg)[1]['answer'] == '\\frac{1}{2}'
  cfg.question_field = 'question'
  with pytest.raises(KeyError, match="field 'question' missing"):
    load_task(cfg)
  with pytest.raises(FileNotFoundError):
    load_task({'name': 'jsonl', 'path': str(tmp_path / 'none.jsonl')})
  with pytest.raises(ValueError, match='needs cfg.path'):
    load_task({'name': 'jsonl'})
  with pytest.raises(ValueError, match='Unknown task name'):
    load_task({'name': 'nope'})
  (tmp_path / 'bad.jsonl').write_text('{"q": 1}\n{oops\n')
  with pytest.raises(ValueError, match='bad.jsonl:2'):
    tasks.read_jsonl(tmp_path / 'bad.jsonl')


def test_procedural_through_load_task():
  recs = load_task({'name': 'countdown', 'split': 'test', 'num_examples': 7, 'seed': 3})
  assert len(recs) == 7 and recs[0]['task'] == 'countdown' and 'numbers' in recs[0]
  recs = load_task(ml_collections.ConfigDict(
      {'name': 'arithmetic', 'num_examples': 4, 'max_ops': 2, 'weight': 0.5}))
  assert len(recs) == 4 and recs[0]['task'] == 'arithmetic'
  with pytest.raises(ValueError, match=r"unknown option\(s\) \['max_opz'\]"):
    load_task({'name': 'arithmetic', 'max_opz': 2})


@pytest.mark.parametrize('value,expected', [
    (27.0, '27'), (-1.0, '-1'), (2.5, '2.5'), (7, '7'), ('1,080', '1080'), ('025', '25'),
    (' 18 ', '18'), ('3.50', '3.5'), ('4.0', '4'), ('\\frac{1}{2}', '\\frac{1}{2}')])
def test_normalize_number(value, expected):
  assert tasks.normalize_number(value) == expected


def test_extract_boxed():
  assert tasks.extract_boxed('so \\boxed{\\frac{a}{b}} and \\boxed{x^{2}}') == 'x^{2}'
  assert tasks.extract_boxed('none') is None
  with pytest.raises(ValueError, match='####'):
    tasks.gsm8k_gold('no marker')
