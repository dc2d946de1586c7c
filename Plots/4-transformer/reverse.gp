# Render with: gnuplot reverse.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'reverse.png'
set title 'Stage 4: a 2-layer GPT learns to reverse 8 digits' noenhanced
set xlabel 'step' noenhanced
set ylabel 'train loss' noenhanced
set grid
set key below noenhanced
set logscale y
set y2label 'held-out exact match' noenhanced
set y2tics
set ytics nomirror
plot 'reverse.csv' skip 1 using 1:2 with lines lw 2 title 'train loss', \
     'reverse.csv' skip 1 using 1:3 axes x1y2 with lines lw 2 title 'held-out exact match'
