# Render with: gnuplot compare-val.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'compare-val.png'
set title 'Stage 8: validation loss in each format' noenhanced
set xlabel 'step' noenhanced
set ylabel 'validation loss (nats per character)' noenhanced
set grid
set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1
plot 'compare-val.csv' skip 1 using 1:2 with lines dt 1 lw 5.75 lc 1 notitle, \
     'compare-val.csv' skip 1 every 6::0 using 1:2 with points pt 7 ps 1.2 lc 1 notitle, \
     keyentry with linespoints dt 1 lw 5.75 lc 1 pt 7 ps 1.2 title 'fp32', \
     'compare-val.csv' skip 1 using 1:3 with lines dt 2 lw 5 lc 2 notitle, \
     'compare-val.csv' skip 1 every 6::1 using 1:3 with points pt 5 ps 1.2 lc 2 notitle, \
     keyentry with linespoints dt 2 lw 5 lc 2 pt 5 ps 1.2 title 'bf16', \
     'compare-val.csv' skip 1 using 1:4 with lines dt 1 lw 4.25 lc 3 notitle, \
     'compare-val.csv' skip 1 every 6::2 using 1:4 with points pt 9 ps 1.2 lc 3 notitle, \
     keyentry with linespoints dt 1 lw 4.25 lc 3 pt 9 ps 1.2 title 'fp16', \
     'compare-val.csv' skip 1 using 1:5 with lines dt 2 lw 3.5 lc 4 notitle, \
     'compare-val.csv' skip 1 every 6::3 using 1:5 with points pt 13 ps 1.2 lc 4 notitle, \
     keyentry with linespoints dt 2 lw 3.5 lc 4 pt 13 ps 1.2 title 'fp16-unscaled', \
     'compare-val.csv' skip 1 using 1:6 with lines dt 1 lw 2.75 lc 5 notitle, \
     'compare-val.csv' skip 1 every 6::4 using 1:6 with points pt 11 ps 1.2 lc 5 notitle, \
     keyentry with linespoints dt 1 lw 2.75 lc 5 pt 11 ps 1.2 title 'bf16-pure', \
     'compare-val.csv' skip 1 using 1:7 with lines dt 2 lw 2 lc 6 notitle, \
     'compare-val.csv' skip 1 every 6::5 using 1:7 with points pt 15 ps 1.2 lc 6 notitle, \
     keyentry with linespoints dt 2 lw 2 lc 6 pt 15 ps 1.2 title 'fp8'
