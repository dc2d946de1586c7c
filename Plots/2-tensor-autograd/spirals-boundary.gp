# Render with: gnuplot spirals-boundary.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 800,560
set output 'spirals-boundary.png'
set title 'Stage 2: decision regions on spirals (100% train)' noenhanced
set xrange [-1.4711540601837108:1.3646232575143666]
set yrange [-1.4258186337035488:1.47808918464867]
set size ratio -1
unset key
set cbrange [-0.5:2.5]
unset colorbox
set palette maxcolors 3
set palette defined (0 '#f4a582', 1 '#92c5de', 2 '#a6dba0')
set linetype 1 lc rgb '#b2182b'
set linetype 2 lc rgb '#2166ac'
set linetype 3 lc rgb '#1b7837'
set linetype 4 lc rgb '#762a83'
set linetype 5 lc rgb '#e08214'
plot 'spirals-boundary-grid.csv' skip 1 using 1:2:3 with image, \
     'spirals-boundary-points.csv' skip 1 using 1:2 with points pt 7 ps 1.3 lc rgb 'black', \
     'spirals-boundary-points.csv' skip 1 using 1:2:(int($3)+1) with points pt 7 ps 0.9 lc variable
