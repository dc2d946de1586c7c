# Render with: gnuplot mlm.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'mlm.png'
set title 'Stage 5: masked-LM pretraining on tinyshakespeare.txt (char)' noenhanced
set xlabel 'step' noenhanced
set ylabel 'loss (nats)' noenhanced
set grid
set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1
set y2label 'accuracy' noenhanced
set y2tics
set ytics nomirror
set y2range [0:100]
set format y2 '%g%%'
plot 'mlm.csv' skip 1 using 1:2 with lines dt 1 lw 5 lc 1 notitle, \
     'mlm.csv' skip 1 every 5::0 using 1:2 with points pt 7 ps 1.2 lc 1 notitle, \
     keyentry with linespoints dt 1 lw 5 lc 1 pt 7 ps 1.2 title 'train loss', \
     'mlm.csv' skip 1 using 1:3 with lines dt 2 lw 4.25 lc 2 notitle, \
     'mlm.csv' skip 1 every 5::1 using 1:3 with points pt 5 ps 1.2 lc 2 notitle, \
     keyentry with linespoints dt 2 lw 4.25 lc 2 pt 5 ps 1.2 title 'held-out loss', \
     'mlm.csv' skip 1 using 1:4 with lines dt 1 lw 3.5 lc 3 notitle, \
     'mlm.csv' skip 1 every 5::2 using 1:4 with points pt 9 ps 1.2 lc 3 notitle, \
     keyentry with linespoints dt 1 lw 3.5 lc 3 pt 9 ps 1.2 title 'held-out MLM loss', \
     'mlm.csv' skip 1 using 1:(100*$5) axes x1y2 with lines dt 2 lw 2.75 lc 4 notitle, \
     'mlm.csv' skip 1 every 5::3 using 1:(100*$5) axes x1y2 with points pt 13 ps 1.2 lc 4 notitle, \
     keyentry with linespoints dt 2 lw 2.75 lc 4 pt 13 ps 1.2 title 'masked-token accuracy', \
     'mlm.csv' skip 1 using 1:(100*$6) axes x1y2 with lines dt 1 lw 2 lc 5 notitle, \
     'mlm.csv' skip 1 every 5::4 using 1:(100*$6) axes x1y2 with points pt 11 ps 1.2 lc 5 notitle, \
     keyentry with linespoints dt 1 lw 2 lc 5 pt 11 ps 1.2 title 'NSP accuracy'
