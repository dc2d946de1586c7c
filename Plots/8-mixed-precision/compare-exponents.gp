# Render with: gnuplot compare-exponents.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'compare-exponents.png'
set title 'Stage 8: gradient elements by binary exponent, against fp16 (subnormal from -24, normal from -14)' noenhanced
set xlabel 'floor(log2 |gradient|), before rounding to fp16 (the ends collect everything beyond)' noenhanced
set ylabel 'share of the run''s non-zero gradient elements' noenhanced
set grid
set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1
plot 'compare-exponents.csv' skip 1 using 1:2 with lines dt 1 lw 2.75 lc 1 notitle, \
     'compare-exponents.csv' skip 1 every 9::0 using 1:2 with points pt 7 ps 1.2 lc 1 notitle, \
     keyentry with linespoints dt 1 lw 2.75 lc 1 pt 7 ps 1.2 title 'fp16', \
     'compare-exponents.csv' skip 1 using 1:3 with lines dt 2 lw 2 lc 2 notitle, \
     'compare-exponents.csv' skip 1 every 9::4 using 1:3 with points pt 5 ps 1.2 lc 2 notitle, \
     keyentry with linespoints dt 2 lw 2 lc 2 pt 5 ps 1.2 title 'fp16-unscaled'
