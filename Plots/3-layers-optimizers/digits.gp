# Render with: gnuplot digits.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'digits.png'
set title 'Stage 3: MLP 64-512-10 on the digits, adamw' noenhanced
set xlabel 'epoch' noenhanced
set ylabel 'loss' noenhanced
set grid
set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1
set logscale y
set y2label 'validation accuracy' noenhanced
set y2tics
set ytics nomirror
set y2range [0:100]
set format y2 '%g%%'
plot 'digits.csv' skip 1 using 1:2 with lines dt 1 lw 3.5 lc 1 notitle, \
     'digits.csv' skip 1 every 8::0 using 1:2 with points pt 7 ps 1.2 lc 1 notitle, \
     keyentry with linespoints dt 1 lw 3.5 lc 1 pt 7 ps 1.2 title 'train loss', \
     'digits.csv' skip 1 using 1:3 with lines dt 2 lw 2.75 lc 2 notitle, \
     'digits.csv' skip 1 every 8::2 using 1:3 with points pt 5 ps 1.2 lc 2 notitle, \
     keyentry with linespoints dt 2 lw 2.75 lc 2 pt 5 ps 1.2 title 'validation loss', \
     'digits.csv' skip 1 using 1:(100*$4) axes x1y2 with lines dt 1 lw 2 lc 3 notitle, \
     'digits.csv' skip 1 every 8::5 using 1:(100*$4) axes x1y2 with points pt 9 ps 1.2 lc 3 notitle, \
     keyentry with linespoints dt 1 lw 2 lc 3 pt 9 ps 1.2 title 'validation accuracy'
