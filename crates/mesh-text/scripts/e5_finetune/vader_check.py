import os
HERE = os.path.dirname(os.path.abspath(__file__))
import json
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
from metrics import report
rows=[json.loads(l) for l in open(HERE + '/data/en_test.jsonl')]
a=SentimentIntensityAnalyzer()
pred=[]
for r in rows:
    c=a.polarity_scores(r['text'])['compound']
    pred.append(2 if c>=0.05 else 0 if c<=-0.05 else 1)
print(report([r['label'] for r in rows],pred,3))
