# Render with: gnuplot pipeline-gpipe.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,220
set output 'pipeline-gpipe.png'
set title 'Pipeline, GPipe, 2 stages, 4 micro-batches (one step as it ran)'
set xlabel 'time (ms)'
set ytics ('rank 0' 0, 'rank 1' 1)
set yrange [1.6:-0.6]
set xrange [0:60.840967140000004]
set style fill solid 0.9 border lc rgb 'white'
set key outside bottom center horizontal
set grid x
set linetype 1 lc rgb '#4c72b0'
set linetype 2 lc rgb '#dd8452'
set linetype 3 lc rgb '#55a868'
set linetype 4 lc rgb '#c44e52'
set linetype 5 lc rgb '#8172b3'
plot 'pipeline-gpipe.csv' skip 1 using (($2 + $3) / 2):1:(($3 - $2) / 2):(0.35):($4 + 1) with boxxyerror \
  lc variable notitle, \
  '' skip 1 using (($2 + $3) / 2):1:5 with labels tc rgb 'white' font ',8' notitle, \
  NaN with boxes lt 1 title 'forward', \
  NaN with boxes lt 2 title 'backward'
