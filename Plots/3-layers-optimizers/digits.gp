# Render with: gnuplot digits.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'digits.png'
set title 'Stage 3: MLP 64-512-10 on the digits, adamw' noenhanced
set xlabel 'epoch' noenhanced
set ylabel 'loss' noenhanced
set grid
set key below noenhanced
set logscale y
set y2label 'validation accuracy' noenhanced
set y2tics
set ytics nomirror
plot 'digits.csv' skip 1 using 1:2 with lines lw 2 title 'train loss', \
     'digits.csv' skip 1 using 1:3 with lines lw 2 title 'validation loss', \
     'digits.csv' skip 1 using 1:4 axes x1y2 with lines lw 2 title 'validation accuracy'
