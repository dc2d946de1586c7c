# Render with: gnuplot spirals-loss.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'spirals-loss.png'
set title 'Stage 2: MLP 2-64-64-3 on spirals, softmax cross-entropy + L2' noenhanced
set xlabel 'step' noenhanced
set ylabel 'loss' noenhanced
set grid
set key below noenhanced
set logscale y
set y2label 'training accuracy' noenhanced
set y2tics
set ytics nomirror
plot 'spirals-loss.csv' skip 1 using 1:2 with lines lw 2 title 'loss', \
     'spirals-loss.csv' skip 1 using 1:3 axes x1y2 with lines lw 2 title 'training accuracy'
