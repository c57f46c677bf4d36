# rails_plot.gp - bench/rails_bench.sh's table as bars: (F/B)/T per method
# on each bed (B: one TCP stream on one rail; 2 = two rails' worth).
#   gnuplot -e "csv='bench/out/rails.csv'; out='bench/out/rails.png'" bench/rails_plot.gp
if (!exists("csv")) csv = 'bench/results/rails.csv'
if (!exists("out")) out = 'bench/results/rails.png'
info = system("awk -F, 'NR == 2 { printf \"%d hosts, %d MiB, DEST on /dev/shm\", $5, $6 }' ".csv)

set terminal pngcairo size 1100,700 noenhanced font ",10"
set output out
set datafile separator ","
set title "Two networks per host: fraction of one rail's F/B\n".info
set ylabel "(F/B)/T, B = one TCP stream on one rail"
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.8
set yrange [0:2.1]
set grid y
set xtics rotate by -30 left
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2
set arrow from graph 0, first 2 to graph 1, first 2 nohead dt 2
set key off
set bmargin 14
set rmargin 28
plot csv using 4:xtic(sprintf("%s: %s", stringcolumn(1), stringcolumn(2))) every ::1
