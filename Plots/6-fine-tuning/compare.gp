# Render with: gnuplot compare.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'compare.png'
set title 'Stage 6: fine-tuning on two new plays, every method (training loss, mean of the last 10 steps)' noenhanced
set xlabel 'step' noenhanced
set ylabel 'loss (nats per token)' noenhanced
set grid
set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1
plot 'compare.csv' skip 1 using 1:2 with lines dt 1 lw 9.5 lc 1 notitle, \
     'compare.csv' skip 1 every 25::0 using 1:2 with points pt 7 ps 1.2 lc 1 notitle, \
     keyentry with linespoints dt 1 lw 9.5 lc 1 pt 7 ps 1.2 title 'full', \
     'compare.csv' skip 1 using 1:3 with lines dt 2 lw 8.75 lc 2 notitle, \
     'compare.csv' skip 1 every 25::2 using 1:3 with points pt 5 ps 1.2 lc 2 notitle, \
     keyentry with linespoints dt 2 lw 8.75 lc 2 pt 5 ps 1.2 title 'head', \
     'compare.csv' skip 1 using 1:4 with lines dt 1 lw 8 lc 3 notitle, \
     'compare.csv' skip 1 every 25::4 using 1:4 with points pt 9 ps 1.2 lc 3 notitle, \
     keyentry with linespoints dt 1 lw 8 lc 3 pt 9 ps 1.2 title 'last-k', \
     'compare.csv' skip 1 using 1:5 with lines dt 2 lw 7.25 lc 4 notitle, \
     'compare.csv' skip 1 every 25::6 using 1:5 with points pt 13 ps 1.2 lc 4 notitle, \
     keyentry with linespoints dt 2 lw 7.25 lc 4 pt 13 ps 1.2 title 'bitfit', \
     'compare.csv' skip 1 using 1:6 with lines dt 1 lw 6.5 lc 5 notitle, \
     'compare.csv' skip 1 every 25::9 using 1:6 with points pt 11 ps 1.2 lc 5 notitle, \
     keyentry with linespoints dt 1 lw 6.5 lc 5 pt 11 ps 1.2 title 'layernorm', \
     'compare.csv' skip 1 using 1:7 with lines dt 2 lw 5.75 lc 6 notitle, \
     'compare.csv' skip 1 every 25::11 using 1:7 with points pt 15 ps 1.2 lc 6 notitle, \
     keyentry with linespoints dt 2 lw 5.75 lc 6 pt 15 ps 1.2 title 'lora', \
     'compare.csv' skip 1 using 1:8 with lines dt 1 lw 5 lc 7 notitle, \
     'compare.csv' skip 1 every 25::13 using 1:8 with points pt 7 ps 1.2 lc 7 notitle, \
     keyentry with linespoints dt 1 lw 5 lc 7 pt 7 ps 1.2 title 'houlsby', \
     'compare.csv' skip 1 using 1:9 with lines dt 2 lw 4.25 lc 8 notitle, \
     'compare.csv' skip 1 every 25::15 using 1:9 with points pt 5 ps 1.2 lc 8 notitle, \
     keyentry with linespoints dt 2 lw 4.25 lc 8 pt 5 ps 1.2 title 'pfeiffer', \
     'compare.csv' skip 1 using 1:10 with lines dt 1 lw 3.5 lc 9 notitle, \
     'compare.csv' skip 1 every 25::18 using 1:10 with points pt 9 ps 1.2 lc 9 notitle, \
     keyentry with linespoints dt 1 lw 3.5 lc 9 pt 9 ps 1.2 title 'prefix', \
     'compare.csv' skip 1 using 1:11 with lines dt 2 lw 2.75 lc 10 notitle, \
     'compare.csv' skip 1 every 25::20 using 1:11 with points pt 13 ps 1.2 lc 10 notitle, \
     keyentry with linespoints dt 2 lw 2.75 lc 10 pt 13 ps 1.2 title 'prompt', \
     'compare.csv' skip 1 using 1:12 with lines dt 1 lw 2 lc 11 notitle, \
     'compare.csv' skip 1 every 25::22 using 1:12 with points pt 11 ps 1.2 lc 11 notitle, \
     keyentry with linespoints dt 1 lw 2 lc 11 pt 11 ps 1.2 title 'ia3'
