"""TIGER vs SASRec vs BERT4Rec on one split under one time budget, one table.

    python run_benchmark.py --dataset=amazon-beauty --models=TIGER,SASRec,BERT4Rec --budget=60 \
        --data_path=../shared/data/atomic

Writes results/<dataset>.md, .csv and .png (rows merge across invocations: run one model
per invocation when the whole benchmark does not fit one sitting).
"""
from recbole_tiger.benchmark.side_by_side import main

if __name__ == "__main__":
    main()
