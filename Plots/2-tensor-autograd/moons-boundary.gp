# Render with: gnuplot moons-boundary.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 800,600
set output 'moons-boundary.png'
set title 'Stage 2: decision regions on moons (100% train)' noenhanced
set xlabel 'input x1' noenhanced
set ylabel 'input x2' noenhanced
set xrange [-1.562445122163881:2.5852524132866197]
set yrange [-1.250162886355191:1.6392517028649003]
set size ratio -1
set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1
set cbrange [-2.0:2.0]
set cblabel 'model output'
set palette defined (0 '#f4a582', 0.5 'white', 1 '#92c5de')
plot 'moons-boundary-grid.csv' skip 1 using 1:2:3 with image notitle, \
     'moons-boundary-points.csv' skip 1 using 1:2 with points pt 7 ps 1.3 lc rgb 'black' notitle, \
     'moons-boundary-points.csv' skip 1 using 1:($3 == 0 ? $2 : NaN) with points pt 7 ps 0.9 lc rgb '#b2182b' notitle, \
     keyentry with points pt 7 ps 1.6 lc rgb '#b2182b' title 'class 0 (output < 0)', \
     'moons-boundary-points.csv' skip 1 using 1:($3 == 1 ? $2 : NaN) with points pt 7 ps 0.9 lc rgb '#2166ac' notitle, \
     keyentry with points pt 7 ps 1.6 lc rgb '#2166ac' title 'class 1 (output > 0)'
