# Render with: gnuplot reverse.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'reverse.png'
set title 'Stage 4: a 2-layer GPT learns to reverse 8 digits' noenhanced
set xlabel 'step' noenhanced
set ylabel 'train loss' noenhanced
set grid
set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1
set logscale y
set y2label 'held-out exact match' noenhanced
set y2tics
set ytics nomirror
set y2range [0:100]
set format y2 '%g%%'
plot 'reverse.csv' skip 1 using 1:2 with lines dt 1 lw 2.75 lc 1 notitle, \
     'reverse.csv' skip 1 every 2::0 using 1:2 with points pt 7 ps 1.2 lc 1 notitle, \
     keyentry with linespoints dt 1 lw 2.75 lc 1 pt 7 ps 1.2 title 'train loss', \
     'reverse.csv' skip 1 using 1:(100*$3) axes x1y2 with lines dt 2 lw 2 lc 2 notitle, \
     'reverse.csv' skip 1 every 2::1 using 1:(100*$3) axes x1y2 with points pt 5 ps 1.2 lc 2 notitle, \
     keyentry with linespoints dt 2 lw 2 lc 2 pt 5 ps 1.2 title 'held-out exact match'
