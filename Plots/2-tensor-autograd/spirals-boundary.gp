# Render with: gnuplot spirals-boundary.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 800,600
set output 'spirals-boundary.png'
set title 'Stage 2: decision regions on spirals (100% train)' noenhanced
set xlabel 'input x1' noenhanced
set ylabel 'input x2' noenhanced
set xrange [-1.4711540601837108:1.3646232575143666]
set yrange [-1.4258186337035488:1.47808918464867]
set size ratio -1
set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1
set cbrange [-0.5:2.5]
unset colorbox
set palette maxcolors 3
set palette defined (0 '#f4a582', 1 '#92c5de', 2 '#a6dba0')
plot 'spirals-boundary-grid.csv' skip 1 using 1:2:3 with image notitle, \
     'spirals-boundary-points.csv' skip 1 using 1:2 with points pt 7 ps 1.3 lc rgb 'black' notitle, \
     'spirals-boundary-points.csv' skip 1 using 1:($3 == 0 ? $2 : NaN) with points pt 7 ps 0.9 lc rgb '#b2182b' notitle, \
     keyentry with points pt 7 ps 1.6 lc rgb '#b2182b' title 'class 0', \
     'spirals-boundary-points.csv' skip 1 using 1:($3 == 1 ? $2 : NaN) with points pt 7 ps 0.9 lc rgb '#2166ac' notitle, \
     keyentry with points pt 7 ps 1.6 lc rgb '#2166ac' title 'class 1', \
     'spirals-boundary-points.csv' skip 1 using 1:($3 == 2 ? $2 : NaN) with points pt 7 ps 0.9 lc rgb '#1b7837' notitle, \
     keyentry with points pt 7 ps 1.6 lc rgb '#1b7837' title 'class 2'
