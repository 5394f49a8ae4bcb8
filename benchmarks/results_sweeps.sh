#!/usr/bin/env bash
# The accuracy sweeps of docs/results.md (sections 1, 3 and 4), run with the `tfprune` command.
# Each finished network is in the CSV at once, so an interrupted run resumes where it stopped.
#
#   bash benchmarks/results_sweeps.sh            # from the repository root; data in ../shared/data
#
# Budget (2026-11-22, 2-core Intel Xeon, CPU only, sharing the cores with other runs): about 80
# minutes in all.
set -euo pipefail
DATA_DIR=${TFPRUNE_DATA_DIR:-../shared/data}
OUT=${OUT:-docs/results}
ALL=random,magnitude,snip,grasp,synflow

# 1. SNIP's MNIST protocol as far as the CPU allows: one batch of 100 examples for the score,
#    biases pruned, SGD momentum 0.9 lr 0.1, batch 100, weight decay 5e-4, 54,000 training
#    examples (10 % held out as in the paper), but 10 epochs (5,400 steps) instead of 250k steps.
tfprune sweep --model lenet_300_100 --data mnist --data-dir "$DATA_DIR" --methods $ALL \
    --compressions 20,50 --include-bias --samples 100 --train-samples 54000 --epochs 10 \
    --batch-size 100 --lr 0.1 --weight-decay 5e-4 --seeds 2 --out "$OUT/snip_lenet300"

# 4. Iterative SNIP and FORCE (60 rounds each) against one-shot SNIP above 99 % sparsity.
tfprune sweep --model lenet_300_100 --data mnist --data-dir "$DATA_DIR" --methods snip,iter_snip,force \
    --compressions 100,200,500 --samples 100 --train-samples 54000 --epochs 10 --batch-size 100 \
    --lr 0.1 --weight-decay 5e-4 --seeds 2 --out "$OUT/iterative_lenet300"

# 3. Accuracy against compression on CIFAR-10, SynFlow paper Fig. 6 style, on a short schedule:
#    quarter-width VGG-11 with BN, 3,000 training images, 4 epochs, 2 seeds, full test set.
tfprune sweep --model vgg11_w0.25 --data cifar10 --data-dir "$DATA_DIR" --methods $ALL \
    --compressions 0.5:3:0.5 --samples 100 --train-samples 3000 --epochs 4 --batch-size 128 \
    --lr 0.1 --weight-decay 5e-4 --seeds 2 --out "$OUT/cifar10_vgg11"

# 1 (continued). SNIP alone on LeNet-300-100 with four times the budget (40 epochs, 21,600 steps).
tfprune sweep --model lenet_300_100 --data mnist --data-dir "$DATA_DIR" --methods snip \
    --compressions 20,50 --include-bias --samples 100 --train-samples 54000 --epochs 40 \
    --batch-size 100 --lr 0.1 --weight-decay 5e-4 --seeds 2 --out "$OUT/snip_lenet300_40epochs"

# 1 (continued). SNIP alone, one seed, 160 epochs (86,400 steps, a third of the paper's).
tfprune sweep --model lenet_300_100 --data mnist --data-dir "$DATA_DIR" --methods snip \
    --compressions 20,50 --include-bias --samples 100 --train-samples 54000 --epochs 160 \
    --batch-size 100 --lr 0.1 --weight-decay 5e-4 --seeds 1 --no-dense --out "$OUT/snip_lenet300_160epochs"

# 1 (continued). The same without pruning biases (a check that pruning them costs nothing).
tfprune sweep --model lenet_300_100 --data mnist --data-dir "$DATA_DIR" --methods snip \
    --compressions 20,50 --samples 100 --train-samples 54000 --epochs 10 --batch-size 100 \
    --lr 0.1 --weight-decay 5e-4 --seeds 2 --no-dense --out "$OUT/snip_lenet300_kernels_only"

# 1 (continued). LeNet-5-Caffe at 98 % and 99 %, one seed, 5 epochs. lr 0.01: at the paper's 0.1
#    the dense LeNet-5-Caffe (no batch norm) diverged to chance in the first epoch here.
tfprune sweep --model lenet5_caffe --data mnist --data-dir "$DATA_DIR" --methods $ALL \
    --compressions 50,100 --include-bias --samples 100 --train-samples 54000 --epochs 5 \
    --batch-size 100 --lr 0.01 --weight-decay 5e-4 --seeds 1 --out "$OUT/snip_lenet5"

# 1 (continued). SNIP alone on LeNet-5-Caffe with four times the budget (20 epochs) and lr 0.05.
tfprune sweep --model lenet5_caffe --data mnist --data-dir "$DATA_DIR" --methods snip \
    --compressions 50,100 --include-bias --samples 100 --train-samples 54000 --epochs 20 \
    --batch-size 100 --lr 0.05 --weight-decay 5e-4 --seeds 1 --out "$OUT/snip_lenet5_20epochs"

# 1 (continued). SNIP with the authors' recipe — standardised inputs, 10 % validation split, a
#    second initialisation under the mask, coupled L2 0.00025·Σw², SGD momentum 0.9, lr 0.1 ×0.1
#    every 25k steps, selection on validation — 250k steps on LeNet-300-100 (about 30 min per
#    network here), 50k on LeNet-5-Caffe (the first two learning rates of the schedule).
python examples/snip_authors_recipe.py --model lenet_300_100 --sparsities 0,0.95,0.98 --steps 250000 \
    --out "$OUT/snip_authors_recipe/lenet_300_100.csv"
python examples/snip_authors_recipe.py --model lenet5_caffe --sparsities 0.98,0.99 --steps 50000 \
    --out "$OUT/snip_authors_recipe/lenet5_caffe.csv"
