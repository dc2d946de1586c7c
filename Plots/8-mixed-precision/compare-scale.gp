# Render with: gnuplot compare-scale.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'compare-scale.png'
set title 'Stage 8: fp16''s loss scale, and the gradients stored below fp16''s normal range' noenhanced
set xlabel 'step' noenhanced
set ylabel 'loss scale' noenhanced
set grid
set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1
set logscale y
set y2label 'non-zero gradient elements stored as 0 or subnormal' noenhanced
set y2tics
set ytics nomirror
set y2range [0:100]
set format y2 '%g%%'
plot 'compare-scale.csv' skip 1 using 1:2 with lines dt 1 lw 3.5 lc 1 notitle, \
     'compare-scale.csv' skip 1 every 166::0 using 1:2 with points pt 7 ps 1.2 lc 1 notitle, \
     keyentry with linespoints dt 1 lw 3.5 lc 1 pt 7 ps 1.2 title 'loss scale', \
     'compare-scale.csv' skip 1 using 1:(100*$3) axes x1y2 with lines dt 2 lw 2.75 lc 2 notitle, \
     'compare-scale.csv' skip 1 every 166::55 using 1:(100*$3) axes x1y2 with points pt 5 ps 1.2 lc 2 notitle, \
     keyentry with linespoints dt 2 lw 2.75 lc 2 pt 5 ps 1.2 title 'below normal fp16', \
     'compare-scale.csv' skip 1 using 1:(100*$4) axes x1y2 with lines dt 1 lw 2 lc 3 notitle, \
     'compare-scale.csv' skip 1 every 166::110 using 1:(100*$4) axes x1y2 with points pt 9 ps 1.2 lc 3 notitle, \
     keyentry with linespoints dt 1 lw 2 lc 3 pt 9 ps 1.2 title 'below normal fp16-unscaled'
