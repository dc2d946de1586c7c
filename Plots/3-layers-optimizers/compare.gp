# Render with: gnuplot compare.gp   (in this folder)
set datafile separator ','
set terminal pngcairo size 900,540
set output 'compare.png'
set title 'Stage 3: validation loss of the digits MLP by optimizer' noenhanced
set xlabel 'epoch' noenhanced
set ylabel 'validation loss' noenhanced
set grid
set key below noenhanced
set logscale y
plot 'compare.csv' skip 1 using 1:2 with lines lw 2 title 'sgd', \
     'compare.csv' skip 1 using 1:3 with lines lw 2 title 'momentum', \
     'compare.csv' skip 1 using 1:4 with lines lw 2 title 'adam', \
     'compare.csv' skip 1 using 1:5 with lines lw 2 title 'adamw'
