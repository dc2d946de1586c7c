# Render with: gnuplot compare.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'compare.png'
set title 'Stage 3: validation loss of the digits MLP by optimizer' noenhanced
set xlabel 'epoch' noenhanced
set ylabel 'validation loss' noenhanced
set grid
set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1
set logscale y
plot 'compare.csv' skip 1 using 1:2 with lines dt 1 lw 4.25 lc 1 notitle, \
     'compare.csv' skip 1 every 8::0 using 1:2 with points pt 7 ps 1.2 lc 1 notitle, \
     keyentry with linespoints dt 1 lw 4.25 lc 1 pt 7 ps 1.2 title 'sgd', \
     'compare.csv' skip 1 using 1:3 with lines dt 2 lw 3.5 lc 2 notitle, \
     'compare.csv' skip 1 every 8::2 using 1:3 with points pt 5 ps 1.2 lc 2 notitle, \
     keyentry with linespoints dt 2 lw 3.5 lc 2 pt 5 ps 1.2 title 'momentum', \
     'compare.csv' skip 1 using 1:4 with lines dt 1 lw 2.75 lc 3 notitle, \
     'compare.csv' skip 1 every 8::4 using 1:4 with points pt 9 ps 1.2 lc 3 notitle, \
     keyentry with linespoints dt 1 lw 2.75 lc 3 pt 9 ps 1.2 title 'adam', \
     'compare.csv' skip 1 using 1:5 with lines dt 2 lw 2 lc 4 notitle, \
     'compare.csv' skip 1 every 8::6 using 1:5 with points pt 13 ps 1.2 lc 4 notitle, \
     keyentry with linespoints dt 2 lw 2 lc 4 pt 13 ps 1.2 title 'adamw'
