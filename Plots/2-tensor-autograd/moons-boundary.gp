# Render with: gnuplot moons-boundary.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 800,560
set output 'moons-boundary.png'
set title 'Stage 2: decision regions on moons (100% train)' noenhanced
set xrange [-1.562445122163881:2.5852524132866197]
set yrange [-1.250162886355191:1.6392517028649003]
set size ratio -1
unset key
set cbrange [-2.0:2.0]
set cblabel 'model output'
set palette defined (0 '#f4a582', 0.5 'white', 1 '#92c5de')
set linetype 1 lc rgb '#b2182b'
set linetype 2 lc rgb '#2166ac'
set linetype 3 lc rgb '#1b7837'
set linetype 4 lc rgb '#762a83'
set linetype 5 lc rgb '#e08214'
plot 'moons-boundary-grid.csv' skip 1 using 1:2:3 with image, \
     'moons-boundary-points.csv' skip 1 using 1:2 with points pt 7 ps 1.3 lc rgb 'black', \
     'moons-boundary-points.csv' skip 1 using 1:2:(int($3)+1) with points pt 7 ps 0.9 lc variable
