# Render with: gnuplot pretrain.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'pretrain.png'
set title 'Stage 5: pretraining on tinyshakespeare.txt (char)' noenhanced
set xlabel 'step' noenhanced
set ylabel 'loss (nats per token)' noenhanced
set grid
set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1
plot 'pretrain.csv' skip 1 using 1:2 with lines dt 1 lw 2.75 lc 1 notitle, \
     'pretrain.csv' skip 1 every 2::0 using 1:2 with points pt 7 ps 1.2 lc 1 notitle, \
     keyentry with linespoints dt 1 lw 2.75 lc 1 pt 7 ps 1.2 title 'train loss', \
     'pretrain.csv' skip 1 using 1:3 with lines dt 2 lw 2 lc 2 notitle, \
     'pretrain.csv' skip 1 every 2::1 using 1:3 with points pt 5 ps 1.2 lc 2 notitle, \
     keyentry with linespoints dt 2 lw 2 lc 2 pt 5 ps 1.2 title 'validation loss'
